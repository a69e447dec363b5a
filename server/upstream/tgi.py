"""Text Generation Inference over its native API: `/generate`, `/generate_stream`, `/info`, `/tokenize`.

One pooled `httpx.AsyncClient` per upstream. The transport is injectable, so tests run the same code against
an in-process fake. Closing a stream's iterator closes its HTTP response, and TGI drops a request from its
batch when its connection goes (tgi-protocol.md §2.5): that is how a client's disconnect reaches the model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from server.config import UpstreamConfig
from server.errors import ProxyError, UpstreamError
from server.schemas.tgi import GenerateParameters, GenerateResponse, Info, StreamResponse
from server.upstream.base import Generated, Limits
from server.upstream.errors import from_tgi_error, from_transport_error
from server.upstream.sse import SSEDecoder

__all__ = ["TGIClient"]

logger = logging.getLogger(__name__)

# After /info fails (upstream down at start, or a server without it), use defaults for this long.
_INFO_RETRY_SECONDS = 10.0


class TGIClient:
    def __init__(self, config: UpstreamConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base_url = config.addresses[0]
        headers = {"content-type": "application/json"}
        if config.token is not None and config.token.get_secret_value():
            headers["authorization"] = f"Bearer {config.token.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
        )
        self._connect_timeout = config.connect_timeout
        self._limits: Limits | None = None
        self._limits_retry_at = 0.0

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        try:
            response = await self._send("/generate", _body(prompt, parameters))
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code != 200:
            raise _status_error(response)
        try:
            payload: GenerateResponse = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError("the upstream sent a body that is not JSON") from None
        if isinstance(payload, list):  # `POST /` compat and the HF router wrap the answer in a list
            payload = payload[0]
        prompt_tokens = response.headers.get("x-prompt-tokens")
        return Generated(payload, int(prompt_tokens) if prompt_tokens and prompt_tokens.isdigit() else None)

    async def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        try:
            async with contextlib.aclosing(await self._send("/generate_stream", _body(prompt, parameters))) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise _status_error(resp)
                decoder = SSEDecoder()
                async for chunk in resp.aiter_bytes():
                    batch: list[StreamResponse] = []
                    for data in decoder.feed(chunk):
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
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        raise UpstreamError("the upstream stream ended before its final event", code="incomplete_generation_stream")

    async def _send(self, path: str, body: bytes) -> httpx.Response:
        """POST and return once headers arrive; the caller reads and closes the body.

        A pooled keep-alive connection may have been closed by the upstream just as it is reused; the request
        then fails before any answer (urllib3 retries this case too). It is sent once more, on a fresh
        connection: nothing reached the client yet, and generation has no side effect to repeat.
        """
        request = self._client.build_request("POST", path, content=body)
        try:
            return await self._client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self._client.send(request, stream=True)

    async def limits(self) -> Limits:
        if self._limits is not None:
            return self._limits
        if time.monotonic() < self._limits_retry_at:
            return Limits()
        try:
            response = await self._client.get("/info", timeout=self._connect_timeout)
            info: Info = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            info = {}
        if not info:
            self._limits_retry_at = time.monotonic() + _INFO_RETRY_SECONDS
            return Limits()
        defaults = Limits()
        self._limits = Limits(
            max_total_tokens=info.get("max_total_tokens"),
            max_input_tokens=info.get("max_input_tokens", info.get("max_input_length")),
            max_stop_sequences=info.get("max_stop_sequences", defaults.max_stop_sequences),
            max_top_n_tokens=info.get("max_top_n_tokens", defaults.max_top_n_tokens),
            max_best_of=info.get("max_best_of", defaults.max_best_of),
        )
        return self._limits

    async def count_tokens(self, prompt: str) -> int | None:
        """Prompt length by the upstream's own tokenizer, or None when it cannot tell."""
        try:
            response = await self._client.post("/tokenize", content=orjson.dumps({"inputs": prompt}))
            tokens = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return len(tokens) if isinstance(tokens, list) else None

    async def healthy(self) -> bool:
        """TGI's `/health`: 200 once its model is loaded and a shard answers."""
        try:
            response = await self._client.get("/health", timeout=self._connect_timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        # The address goes to the log for operators, never to clients; no userinfo, so no credentials.
        url = self._client.base_url
        logger.warning("upstream %s://%s:%s failed: %s", url.scheme, url.host, url.port or "", type(exc).__name__)
        return from_transport_error(exc)


def _body(prompt: str, parameters: GenerateParameters) -> bytes:
    return orjson.dumps({"inputs": prompt, "parameters": parameters})


def _parse_event(data: bytes) -> StreamResponse:
    try:
        event: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a stream event that is not JSON") from None
    if not isinstance(event, dict):
        raise UpstreamError("the upstream sent a stream event that is not a JSON object")
    if event.get("error") is not None:
        raise from_tgi_error(None, event)
    if "token" not in event:
        raise UpstreamError("the upstream sent a stream event without a token")
    event.setdefault("generated_text", None)
    event.setdefault("details", None)
    parsed: StreamResponse = event  # type: ignore[assignment]
    return parsed


def _status_error(response: httpx.Response) -> Exception:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return from_tgi_error(response.status_code, body, response.headers.get("retry-after"))
