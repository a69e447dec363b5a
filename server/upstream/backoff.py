"""How long to wait before retrying an upstream call: exponential backoff with jitter, and the upstream's
own hint (`Retry-After`, HF's `estimated_time`) as a floor.

Jitter is "equal jitter" (half fixed, half random): concurrent clients that failed together spread out
instead of retrying in lockstep, and no retry comes back at once.
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, *, base: float, cap: float, rng: random.Random | None = None) -> None:
        self._base = base
        self._cap = cap
        self._rng = rng or random.Random()

    def delay(self, retry: int, hint: float | None = None) -> float:
        """Seconds before retry number `retry` (0 for the first)."""
        ceiling = min(self._cap, self._base * 2.0**retry)
        wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(wait, hint) if hint is not None else wait
