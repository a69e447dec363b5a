"""HTTP to one model's upstream: the pooled client, replicas, backpressure, retries and deadlines.

Every upstream kind that speaks HTTP goes through `UpstreamHTTP`, so these rules (README, "Reliability") hold
for all of them:
- a call that fails before its first token (connection refused or reset, 429, 5xx, a stream that ends before
  its first event) is retried with backoff, on another replica when there is one, within the time left for
  the first token; a replica that failed is rested (`server.upstream.replicas`);
- nothing is retried once an event has been handed on, because by then it may have reached the client;
- deadlines: connect, first token, idle between events, and total; each one ends the call as `UpstreamTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from server.config import UpstreamConfig
from server.errors import ProxyError, UpstreamError, UpstreamTimeout
from server.upstream.admission import Gate
from server.upstream.backoff import Backoff
from server.upstream.errors import from_transport_error
from server.upstream.replicas import Replica, ReplicaSet
from server.upstream.sse import SSEDecoder
from server.upstream.transport import LeanTransport
from server.upstream.watchdog import Watchdog

__all__ = ["ErrorReader", "Reply", "UpstreamHTTP", "close_response"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ErrorReader = Callable[[httpx.Response], ProxyError]
"""Turns a non-200 answer (body already read) into the error to report; differs per upstream kind."""


@dataclass(frozen=True, slots=True)
class Reply:
    content: bytes
    headers: httpx.Headers


class _AttemptFailed(Exception):
    """One attempt failed before anything was handed on; `retry` says whether another attempt may help."""

    def __init__(self, error: ProxyError, *, retry: bool, rest: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry = retry
        self.rest = rest  # the replica itself is at fault: send the next calls elsewhere for a while


class UpstreamHTTP:
    def __init__(
        self,
        config: UpstreamConfig,
        *,
        gate: Gate,
        read_error: ErrorReader,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        sent_headers = {"content-type": "application/json", **(headers or {})}
        if config.token is not None and config.token.get_secret_value():
            sent_headers["authorization"] = f"Bearer {config.token.get_secret_value()}"
        # Reads have no httpx timeout: the watchdog's moving deadline covers first token, idle and total.
        self._client = httpx.AsyncClient(
            headers=sent_headers,
            transport=transport,
            mounts=None if transport is not None else _lean_mounts(config.max_connections),
            timeout=httpx.Timeout(None, connect=config.connect_timeout, write=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
        )
        self.replicas = ReplicaSet(config.addresses, cooldown=config.cooldown)
        self.gate = gate
        self._config = config
        self._backoff = Backoff(base=config.backoff, cap=config.backoff_max)
        self._read_error = read_error

    async def post(self, path: str, body: bytes) -> Reply:
        """POST and read the whole 200 answer; the first-token deadline covers the whole of it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self._config.first_token_timeout, self._config.total_timeout)
        try:
            async with (
                self.gate.slot(),
                asyncio.timeout_at(deadline),
                self._with_retries(deadline, lambda r: self._post_once(r, path, body)) as (_, reply),
            ):
                return reply
        except TimeoutError:
            raise self._timeout(None, None, first=True) from None

    async def stream(self, path: str, body: bytes) -> AsyncGenerator[list[bytes], None]:
        """POST and yield the SSE data payloads of each read; closing the iterator closes the call."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        total_at = start + self._config.total_timeout
        watchdog = Watchdog(min(total_at, start + self._config.first_token_timeout))
        try:
            opened = self._with_retries(
                watchdog.deadline, lambda replica: self._open_stream(replica, path, body, watchdog)
            )
            # the replica is held (counted in flight) until the stream ends
            async with self.gate.slot(), opened as (replica, (response, chunks, decoder, first)):
                try:
                    idle = self._config.idle_timeout
                    watchdog.deadline = min(total_at, loop.time() + idle)
                    yield first
                    while True:
                        try:
                            chunk = await watchdog.wait(anext(chunks, None))
                        except TimeoutError:
                            raise self._timeout(watchdog, total_at, first=False) from None
                        except httpx.HTTPError as exc:
                            raise self._transport_error(replica, exc) from None
                        if chunk is None:
                            if decoder.has_partial_event():
                                logger.warning("the upstream's stream ended in the middle of an event")
                            return
                        events = decoder.feed(chunk)
                        if events:
                            watchdog.deadline = min(total_at, loop.time() + idle)
                            yield events
                finally:
                    await close_response(response)
        finally:
            watchdog.close()

    async def get(self, path: str) -> httpx.Response | None:
        """A small GET (such as `/info`) to the least busy replica; None when it cannot be reached in time."""
        with self.replicas.lease() as replica:
            return await self._get(replica, path)

    async def check_replicas(self, path: str) -> bool:
        """GET `path` on every replica at once; a replica that fails it rests, one that passes is woken.
        True when at least one passes. Passing means any answer but 5xx and an auth refusal: TGI's `/health`
        answers 200 or 503, and the HF router's model route, which has no health check, answers a GET
        without generating."""
        responses = await asyncio.gather(*(self._get(replica, path) for replica in self.replicas.replicas))
        healthy = False
        for replica, response in zip(self.replicas.replicas, responses, strict=True):
            if response is not None and response.status_code < 500 and response.status_code not in (401, 403):
                self.replicas.wake(replica)
                healthy = True
            else:
                self.replicas.rest(replica)
        return healthy

    async def _get(self, replica: Replica, path: str) -> httpx.Response | None:
        try:
            return await self._client.get(replica.url + path, timeout=self._config.connect_timeout)
        except httpx.HTTPError:
            return None

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def _with_retries(
        self, deadline: float, attempt: Callable[[Replica], Awaitable[T]]
    ) -> AsyncIterator[tuple[Replica, T]]:
        """Run `attempt` on a replica, again on failures worth retrying while `deadline` allows; the block runs
        with the replica that succeeded and its result. Each replica is leased (counted in flight) from the
        moment it is chosen, the wait before its attempt included, until its attempt failed or the block ended."""
        loop = asyncio.get_running_loop()
        tried: list[Replica] = []
        failure: _AttemptFailed | None = None
        failed: Replica | None = None
        for retry in range(self._config.retries + 1):
            with self.replicas.lease(avoid=tried) as replica:
                if failure is not None:
                    # The upstream's own wait applies to asking it again, not to asking another replica.
                    delay = self._backoff.delay(retry - 1, failure.error.retry_after if replica is failed else None)
                    if loop.time() + delay >= deadline:
                        raise failure.error from None
                    logger.warning("upstream call failed (%s); retry %d in %.2f s", failure.error.code, retry, delay)
                    await asyncio.sleep(delay)
                tried.append(replica)
                try:
                    result = await attempt(replica)
                except _AttemptFailed as attempt_failed:
                    if attempt_failed.rest:
                        self.replicas.rest(replica)
                    if not attempt_failed.retry or retry == self._config.retries:
                        raise attempt_failed.error from None
                    failure, failed = attempt_failed, replica
                    continue
                yield replica, result
                return
        raise AssertionError("unreachable: the last attempt raises")

    async def _post_once(self, replica: Replica, path: str, body: bytes) -> Reply:
        try:
            response = await self._send(replica, path, body)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _AttemptFailed(self._transport_error(replica, exc), retry=True, rest=True) from None
        if response.status_code != 200:
            raise self._status_failure(response)
        return Reply(content, response.headers)

    async def _open_stream(
        self, replica: Replica, path: str, body: bytes, watchdog: Watchdog
    ) -> tuple[httpx.Response, AsyncIterator[bytes], SSEDecoder, list[bytes]]:
        """Send, and read up to the first event: until then a failure may still be retried."""
        response: httpx.Response | None = None
        try:
            response = await watchdog.wait(self._send(replica, path, body))
            if response.status_code != 200:
                await watchdog.wait(response.aread())
                raise self._status_failure(response)
            chunks = response.aiter_bytes()
            decoder = SSEDecoder()
            while (chunk := await watchdog.wait(anext(chunks, None))) is not None:
                events = decoder.feed(chunk)
                if events:
                    return response, chunks, decoder, events
            raise _AttemptFailed(
                UpstreamError("The upstream closed the stream before its first event.", code="upstream_connection"),
                retry=True,
                rest=True,
            )
        except BaseException as exc:
            if response is not None:
                await close_response(response)
            if isinstance(exc, TimeoutError):
                raise self._timeout(watchdog, None, first=True) from None
            if isinstance(exc, httpx.HTTPError):
                raise _AttemptFailed(self._transport_error(replica, exc), retry=True, rest=True) from None
            raise

    async def _send(self, replica: Replica, path: str, body: bytes) -> httpx.Response:
        """POST and return once headers arrive; the caller reads and closes the body.

        A pooled keep-alive connection may have been closed by the upstream just as it is reused; the request
        then fails before any answer (urllib3 retries this case too). It is sent once more at once, on a fresh
        connection, without counting as a retry or resting the replica: the replica did nothing wrong.
        """
        request = self._client.build_request("POST", replica.url + path, content=body)
        try:
            return await self._client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self._client.send(request, stream=True)

    def _status_failure(self, response: httpx.Response) -> _AttemptFailed:
        status = response.status_code
        # 429 and 5xx may pass; 5xx also says this replica is unwell. 4xx is about the request: never retried.
        return _AttemptFailed(self._read_error(response), retry=status == 429 or status >= 500, rest=status >= 500)

    def _timeout(self, watchdog: Watchdog | None, total_at: float | None, *, first: bool) -> UpstreamTimeout:
        config = self._config
        if first:
            what = f"its first token within {min(config.first_token_timeout, config.total_timeout):g} s"
        elif watchdog is not None and total_at is not None and watchdog.deadline >= total_at:
            what = f"the whole answer within {config.total_timeout:g} s"
        else:
            what = f"a token for {config.idle_timeout:g} s"
        return UpstreamTimeout(f"The upstream did not send {what}.")

    def _transport_error(self, replica: Replica, exc: httpx.HTTPError) -> ProxyError:
        # The address goes to the log for operators, never to clients; userinfo is left out, so no credentials.
        url = httpx.URL(replica.url)
        logger.warning("upstream %s://%s:%s failed: %s", url.scheme, url.host, url.port or "", type(exc).__name__)
        return from_transport_error(exc)


def _lean_mounts(max_connections: int) -> dict[str, httpx.AsyncBaseTransport]:
    """Plain-HTTP upstreams go through `LeanTransport`, unless the environment sends HTTP through a proxy
    (HTTP_PROXY, ALL_PROXY), which httpx's own transport knows how to use."""
    proxies = urllib.request.getproxies()
    if "http" in proxies or "all" in proxies:
        return {}
    return {"http://": LeanTransport(max_connections=max_connections)}


async def close_response(response: httpx.Response) -> None:
    """Close a streamed response, to the end even if this task is cancelled meanwhile (a client gone, a choice
    stopped, a second cancellation while the first is handled): a close cut short leaves the upstream
    connection open, and the upstream generating for nobody (seen in the soak test, scripts/soak.py)."""
    closing = asyncio.ensure_future(response.aclose())
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await asyncio.gather(closing, return_exceptions=True)  # finish the close, then let the cancel go on
        raise
