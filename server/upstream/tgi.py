"""Text Generation Inference over its native API: `/generate`, `/generate_stream`, `/info`, `/tokenize`; and
the HF router's hf-inference provider, which serves the same bodies on TGI's compat route per model.

HTTP, replicas, retries and deadlines are `server.upstream.http`'s. Closing a stream's iterator closes its
HTTP response, and TGI drops a request from its batch when its connection goes (docs/tgi-wire.md §2): that
is how a client's disconnect reaches the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from server.errors import ProxyError, UpstreamError
from server.upstream.base import Generated, Limits
from server.upstream.errors import error_from_upstream, json_object
from server.upstream.http import UpstreamHTTP
from server.upstream.tgi_wire import GenerateParameters, GenerateResponse, Info, StreamResponse

__all__ = ["TGI_ROUTES", "Routes", "TGIClient", "hf_inference_routes", "read_tgi_error"]

# After /info fails (upstream down at start, or a server without it), use defaults for this long.
_INFO_RETRY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Routes:
    """Where a native text-generation server takes each call; `None` for what it does not offer."""

    generate: str
    stream: str
    stream_flag: bool  # the body says `"stream": true` (the compat route `/` and the HF router)
    info: str | None
    tokenize: str | None
    health: str


TGI_ROUTES = Routes("/generate", "/generate_stream", False, "/info", "/tokenize", "/health")


def hf_inference_routes(model_id: str) -> Routes:
    """The HF router's hf-inference provider: TGI's compat route per model, no /info or /tokenize
    (docs/tgi-wire.md §5). Its health check is a GET of the model route, which answers without generating."""
    route = f"/models/{model_id}"
    return Routes(route, route, True, None, None, route)


class TGIClient:
    """A native text-generation upstream: TGI itself, an Inference Endpoint running TGI, or the HF router."""

    def __init__(self, http: UpstreamHTTP, routes: Routes = TGI_ROUTES) -> None:
        self._http = http
        self._routes = routes
        self._limits: Limits | None = None
        self._limits_retry_at = 0.0
        self._limits_fetch: asyncio.Future[Limits] | None = None

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        reply = await self._http.post(self._routes.generate, self._body(prompt, parameters, stream=False))
        try:
            payload: GenerateResponse = orjson.loads(reply.content)
        except orjson.JSONDecodeError:
            raise UpstreamError("the upstream sent a body that is not JSON") from None
        if isinstance(payload, list):  # `POST /` compat and the HF router wrap the answer in a list
            payload = payload[0]
        prompt_tokens = reply.headers.get("x-prompt-tokens")
        return Generated(payload, int(prompt_tokens) if prompt_tokens and prompt_tokens.isdigit() else None)

    async def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        body = self._body(prompt, parameters, stream=True)
        async with contextlib.aclosing(self._http.stream(self._routes.stream, body)) as payloads:
            async for payload in payloads:
                batch: list[StreamResponse] = []
                for data in payload:
                    try:
                        event = _parse_event(data)
                    except ProxyError:
                        if batch:  # the tokens before an error event still reach the client
                            yield batch
                        raise
                    batch.append(event)
                    if event["generated_text"] is not None:
                        yield batch
                        return
                if batch:
                    yield batch
        raise UpstreamError("the upstream stream ended before its final event", code="incomplete_generation_stream")

    async def limits(self) -> Limits:
        if self._limits is not None:
            return self._limits
        if self._routes.info is None or time.monotonic() < self._limits_retry_at:
            return Limits()
        # Requests that arrive together share one `/info` call; one that leaves does not cancel it for the rest.
        if self._limits_fetch is None or self._limits_fetch.done():
            self._limits_fetch = asyncio.ensure_future(self._fetch_limits(self._routes.info))
        return await asyncio.shield(self._limits_fetch)

    async def _fetch_limits(self, route: str) -> Limits:
        response = await self._http.get(route)
        try:
            info: Info = response.json() if response is not None and response.status_code == 200 else {}
        except ValueError:
            info = {}
        if not info:
            self._limits_retry_at = time.monotonic() + _INFO_RETRY_SECONDS
            return Limits()
        defaults = Limits()
        self._limits = Limits(
            max_total_tokens=info.get("max_total_tokens"),
            max_stop_sequences=info.get("max_stop_sequences", defaults.max_stop_sequences),
            max_top_n_tokens=info.get("max_top_n_tokens", defaults.max_top_n_tokens),
            max_best_of=info.get("max_best_of", defaults.max_best_of),
        )
        return self._limits

    async def count_tokens(self, prompt: str) -> int | None:
        """Prompt length by the upstream's own tokenizer, or None when it cannot tell."""
        if self._routes.tokenize is None:
            return None
        try:
            reply = await self._http.post(self._routes.tokenize, orjson.dumps({"inputs": prompt}))
            tokens = orjson.loads(reply.content)
        except (ProxyError, orjson.JSONDecodeError):
            return None
        return len(tokens) if isinstance(tokens, list) else None

    async def healthy(self) -> bool:
        """Every replica's `/health` (200 once TGI's model is loaded and a shard answers), which also rests or
        wakes each replica for the balancer; healthy when any replica is."""
        return await self._http.check_replicas(self._routes.health)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, prompt: str, parameters: GenerateParameters, *, stream: bool) -> bytes:
        if self._routes.stream_flag:
            return orjson.dumps({"inputs": prompt, "parameters": parameters, "stream": stream})
        return orjson.dumps({"inputs": prompt, "parameters": parameters})


def read_tgi_error(response: httpx.Response) -> ProxyError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_upstream(response.status_code, body, response.headers.get("retry-after"))


def _parse_event(data: bytes) -> StreamResponse:
    event = json_object(data, "a stream event")
    if event.get("error") is not None:
        raise error_from_upstream(None, event)
    if "token" not in event:
        raise UpstreamError("the upstream sent a stream event without a token")
    event.setdefault("generated_text", None)
    event.setdefault("details", None)
    parsed: StreamResponse = event  # type: ignore[assignment]
    return parsed
