"""HTTP handlers: read and validate the body, find the model, then answer as JSON or as an SSE stream.

The two completion handlers read the raw body themselves (see `server.api.openai.validation`) and race every await that
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

from server.api.openai.endpoints import Work, chat_work, completion_work, in_openai_terms
from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from server.api.openai.translate import prompts_of, stop_list, wants_usage
from server.api.openai.validation import parse_request
from server.config import Settings
from server.edge.sse import SSEResponse
from server.errors import ProxyError, RequestTooLarge
from server.generation.fanout import MergedStreams
from server.generation.formats.openai import ChatFormat, CompletionFormat, Format
from server.generation.relay import OnlyCall, RelayedChoices, relayed_response, upstream_body
from server.generation.run import complete, open_stream, stream_jobs
from server.ops.readiness import Readiness
from server.registry import ModelRegistry, ServedModel
from server.upstream import Relay, Upstream

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
    """Readiness: every model's upstream passed its last background health check (`server.ops.readiness`)."""
    readiness: Readiness = request.app.state.readiness
    readiness.start()
    ok, body = readiness.report()
    return JSONBody(body, status_code=200 if ok else 503)


async def _serve(
    request: Request,
    schema: type[RequestModel],
    plan_work: Callable[[RequestModel, ServedModel, Upstream], Awaitable[Work]],
    *,
    chat: bool,
) -> Response:
    settings: Settings = request.app.state.settings
    raw = await _read_body(request, settings.server.max_body_bytes)
    parsed = parse_request(raw, schema)
    model = _registry(request).get(parsed.model)
    upstream = model.upstream
    ping_seconds = settings.server.ping_seconds

    async def answer(upstream: Upstream) -> Response:
        work = await plan_work(parsed, model, upstream)
        if work.plan.stream:
            body = await stream_jobs(upstream, work.jobs, work.plan, work.fmt, first_event_timeout=ping_seconds)
            return SSEResponse(body, ping_seconds=ping_seconds)
        choices, usage = await complete(upstream, work.jobs, work.plan)
        return JSONBody(work.fmt.response(choices, usage))

    try:
        if isinstance(upstream, Relay):
            return await _relay(request, upstream, model, parsed, orjson.loads(raw), chat=chat)
        return await _until_disconnect(request, answer(upstream))
    except ProxyError as exc:
        raise in_openai_terms(exc, chat=chat) from None


async def _relay(
    request: Request,
    upstream: Relay,
    model: ServedModel,
    parsed: ChatCompletionRequest | CompletionRequest,
    raw: dict[str, Any],
    *,
    chat: bool,
) -> Response:
    """An OpenAI-style upstream: the client's body goes through, the answer is normalised
    (`server.generation.relay`)."""
    settings: Settings = request.app.state.settings
    stops = stop_list(parsed.stop, model.config.stop)
    body = upstream_body(
        raw, model_id=model.config.upstream.model_id or model.name, defaults=model.config.defaults, stops=stops
    )
    path = "/v1/chat/completions" if chat else "/v1/completions"
    include_usage = wants_usage(parsed)
    fmt: Format = (ChatFormat if chat else CompletionFormat)(model.name, include_usage=include_usage, top_logprobs=0)
    if not body.get("stream"):
        answer = await _until_disconnect(request, upstream.complete(path, body))
        return JSONBody(relayed_response(answer, fmt, stops, chat=chat))
    choices = (parsed.n or 1) * (1 if isinstance(parsed, ChatCompletionRequest) else len(prompts_of(parsed)))
    consumer = RelayedChoices(fmt, stops, chat=chat, choices=choices, include_usage=include_usage)
    merged = MergedStreams([OnlyCall()], lambda _: upstream.stream(path, body))
    stream = open_stream(merged, consumer, prelude=consumer.prelude(), first_event_timeout=settings.server.ping_seconds)
    return SSEResponse(await _until_disconnect(request, stream), ping_seconds=settings.server.ping_seconds)


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
