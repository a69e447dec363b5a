"""HTTP handlers: read and validate the body, find the model, then answer as JSON or as an SSE stream.

The two completion handlers read the raw body themselves (see `server.validation`) and race every await that
involves the upstream against the client's disconnect, so a client that leaves cancels its upstream request
at once, also before the first byte and for non-streamed answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from server.config import Settings
from server.endpoints import Work, chat_work, completion_work, in_openai_terms
from server.errors import ProxyError, RequestTooLarge
from server.generation import complete, open_stream
from server.models import ModelRegistry, ServedModel
from server.schemas.openai import ChatCompletionRequest, CompletionRequest
from server.sse_response import SSEResponse
from server.validation import parse_request

__all__ = ["ClientGone", "router", "schema_components"]

T = TypeVar("T")
RequestModel = TypeVar("RequestModel", bound=ChatCompletionRequest | CompletionRequest)

router = APIRouter()


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nobody is left to answer."""


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_REF_TEMPLATE = "#/components/schemas/{model}"


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The handlers read their body themselves, so the OpenAPI document is told its schema here."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    schema.pop("$defs", None)  # published once under components, see `schema_components`
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def schema_components() -> dict[str, Any]:
    """Nested request types the request bodies refer to, for the OpenAPI document's components."""
    components: dict[str, Any] = {}
    for model in (ChatCompletionRequest, CompletionRequest):
        components.update(model.model_json_schema(ref_template=_REF_TEMPLATE).get("$defs", {}))
    return components


@router.post("/v1/chat/completions", openapi_extra=_body_schema(ChatCompletionRequest))
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    return await _serve(request, ChatCompletionRequest, chat_work, chat=True)


@router.post("/v1/completions", openapi_extra=_body_schema(CompletionRequest))
@router.post("/completions", include_in_schema=False)
async def completions(request: Request) -> Response:
    return await _serve(request, CompletionRequest, completion_work, chat=False)


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(request: Request) -> Response:
    return JSONBody({"object": "list", "data": [model.card() for model in _registry(request)]})


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(request: Request, model_id: str) -> Response:
    return JSONBody(_registry(request).get(model_id).card())


@router.get("/health")
async def health() -> Response:
    """Liveness: the process serves HTTP. Upstream reachability is `/ready`."""
    return JSONBody({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    """Readiness: every model's upstream answers its health check (checked now, concurrently)."""
    models = list(_registry(request))
    results = await asyncio.gather(*(model.upstream.healthy() for model in models))
    # A model held in this process says `loaded`, `loading` or `unavailable`; an upstream server `ok` or not.
    upstreams = {
        model.name: model.status or ("ok" if ok else "unavailable") for model, ok in zip(models, results, strict=True)
    }
    ok = all(results)
    return JSONBody({"status": "ready" if ok else "unavailable", "models": upstreams}, status_code=200 if ok else 503)


async def _serve(
    request: Request,
    schema: type[RequestModel],
    plan_work: Callable[[RequestModel, ServedModel], Awaitable[Work]],
    *,
    chat: bool,
) -> Response:
    settings: Settings = request.app.state.settings
    parsed = parse_request(await _read_body(request, settings.server.max_body_bytes), schema)
    model = _registry(request).get(parsed.model)
    try:
        work = await _until_disconnect(request, plan_work(parsed, model))
        if work.plan.stream:
            body = await _until_disconnect(
                request,
                open_stream(
                    model.upstream,
                    work.jobs,
                    work.plan,
                    work.fmt,
                    first_event_timeout=settings.server.ping_seconds,
                ),
            )
            return SSEResponse(body, ping_seconds=settings.server.ping_seconds)
        choices, usage = await _until_disconnect(request, complete(model.upstream, work.jobs, work.plan))
    except ProxyError as exc:
        raise in_openai_terms(exc, chat=chat) from None
    return JSONBody(work.fmt.response(choices, usage))


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.models
    return registry


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (and so its upstream call) as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled (shutdown): take the upstream call with it
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
