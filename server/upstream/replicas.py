"""Replicas of one model's upstream: least-in-flight choice, and a rest for a replica that just failed.

A replica that refused a connection, reset it or answered 5xx is rested for `cooldown` seconds: new calls go
to the others while it recovers. If every replica is resting, the one that wakes first is used anyway; a
model is never made unreachable by its own bookkeeping.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

__all__ = ["Replica", "ReplicaSet"]


@dataclass(eq=False, slots=True)
class Replica:
    url: str
    in_flight: int = 0
    resting_until: float = 0.0


class ReplicaSet:
    def __init__(self, urls: list[str], *, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = [Replica(url) for url in urls]
        self._cooldown = cooldown
        self._clock = clock
        self._turn = 0  # rotates the starting point, so ties do not always go to the first replica

    def pick(self, avoid: Collection[Replica] = ()) -> Replica:
        """Take the awake replica with the fewest calls in flight, preferring ones not in `avoid` (those a
        call already failed on); the caller must `release` it."""
        now = self._clock()
        count = len(self.replicas)
        self._turn = (self._turn + 1) % count
        ordered = [self.replicas[(self._turn + i) % count] for i in range(count)]
        candidates = [r for r in ordered if r not in avoid] or ordered
        awake = [r for r in candidates if r.resting_until <= now]
        if awake:
            chosen = min(awake, key=lambda r: r.in_flight)
        else:
            chosen = min(candidates, key=lambda r: r.resting_until)
        chosen.in_flight += 1
        return chosen

    def release(self, replica: Replica) -> None:
        replica.in_flight -= 1

    @contextlib.contextmanager
    def lease(self, avoid: Collection[Replica] = ()) -> Iterator[Replica]:
        """`pick`, and `release` when the block ends, however it ends (an error, a cancellation)."""
        replica = self.pick(avoid)
        try:
            yield replica
        finally:
            self.release(replica)

    def rest(self, replica: Replica) -> None:
        replica.resting_until = self._clock() + self._cooldown

    def wake(self, replica: Replica) -> None:
        replica.resting_until = 0.0
