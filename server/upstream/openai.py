"""An OpenAI-compatible upstream (kind `openai`): TGI's own Messages API, the HF router's `/v1`, vLLM.

The client's request goes through as it is (see `server.generation.relay` for what is changed on the way back); this
module only moves JSON: a whole answer, or the stream's chunks in batches of those that arrived together.
HTTP, replicas, retries and deadlines are `server.upstream.http`'s. An error event inside the stream, in
either shape (`{"error": "...", "error_type"}` from TGI, `{"error": {"message", ...}}` from OpenAI-style
servers), raises the mapped error; `data: [DONE]` ends the stream, and a stream without it simply ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from server.errors import ContextLengthExceeded, InvalidRequest, ProxyError
from server.upstream.errors import error_from_upstream, json_object
from server.upstream.http import UpstreamHTTP
from server.upstream.openai_wire import Chunk

__all__ = ["OpenAIClient", "read_openai_error"]


_END_OF_STREAM_DATA = b"[DONE]"  # the data of OpenAI's last event


class OpenAIClient:
    def __init__(self, http: UpstreamHTTP) -> None:
        self._http = http

    async def complete(self, path: str, body: dict[str, Any]) -> Chunk:
        reply = await self._http.post(path, orjson.dumps(body))
        return json_object(reply.content, "an answer")

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[list[Chunk]]:
        async with contextlib.aclosing(self._http.stream(path, orjson.dumps(body))) as payloads:
            async for payload in payloads:
                batch: list[Chunk] = []
                for data in payload:
                    if data.strip() == _END_OF_STREAM_DATA:
                        if batch:
                            yield batch
                        return
                    chunk = json_object(data, "a stream chunk")
                    if chunk.get("error") is not None:
                        if batch:  # what came before the error still reaches the client
                            yield batch
                        raise error_from_upstream(None, chunk)
                    batch.append(chunk)
                if batch:
                    yield batch

    async def healthy(self) -> bool:
        """`/v1/models` on every replica: TGI, vLLM and the HF router all serve it."""
        return await self._http.check_replicas("/v1/models")

    async def aclose(self) -> None:
        await self._http.aclose()


def read_openai_error(response: httpx.Response) -> ProxyError:
    """A non-200 answer in either error shape. OpenAI's own `param` and `code` are kept for request errors,
    so a client sees what the upstream said about its request."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code in (400, 422) and isinstance(error, dict):
        message = str(error.get("message") or "invalid request")
        param, code = error.get("param"), error.get("code")
        if code == "context_length_exceeded" or "maximum context length" in message:
            return ContextLengthExceeded(message, param=param if isinstance(param, str) else "messages")
        return InvalidRequest(
            message,
            param=param if isinstance(param, str) else None,
            code=code if isinstance(code, str) else "upstream_validation_error",
        )
    return error_from_upstream(response.status_code, body, response.headers.get("retry-after"))
