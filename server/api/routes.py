"""The HTTP routes: each generation endpoint is a descriptor (`server.api.endpoint`) served by one handler.

The handler reads the raw body itself (see `server.api.openai.validation`) and races every await that involves
the upstream against the client's disconnect (`server.edge.body`), so a client that leaves cancels its
upstream request at once, also before the first byte and for non-streamed answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from server.api.endpoint import Endpoint, RequestT
from server.api.openai import relayed
from server.api.openai.chat import CHAT
from server.api.openai.completions import COMPLETIONS
from server.api.openai.validation import parse_request
from server.edge.body import read_body, until_disconnect
from server.edge.sse import SSEResponse
from server.errors import ProxyError
from server.generation.run import EventStream, complete, stream_jobs
from server.registry import ServedModel
from server.state import state_of
from server.upstream.base import Relay, Upstream
from server.upstream.kinds import Relayed, Translated

__all__ = ["build_router", "schema_components"]


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_REF_TEMPLATE = "#/components/schemas/{model}"
_ENDPOINTS: tuple[Endpoint[Any], ...] = (CHAT, COMPLETIONS)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The handlers read their body themselves, so the OpenAPI document is told its schema here."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    schema.pop("$defs", None)  # published once under components, see `schema_components`
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def schema_components() -> dict[str, Any]:
    """Nested request types the request bodies refer to, for the OpenAPI document's components."""
    components: dict[str, Any] = {}
    for endpoint in _ENDPOINTS:
        components.update(endpoint.schema.model_json_schema(ref_template=_REF_TEMPLATE).get("$defs", {}))
    return components


def build_router() -> APIRouter:
    """Every route of the API, on a router of its own for each app."""
    router = APIRouter()
    for endpoint in _ENDPOINTS:
        handler = _handler(endpoint)
        schema = _body_schema(endpoint.schema)
        router.add_api_route(endpoint.path, handler, methods=["POST"], name=endpoint.name, openapi_extra=schema)
        # the same without `/v1`, for clients whose base URL leaves it out
        short = endpoint.path.removeprefix("/v1")
        router.add_api_route(short, handler, methods=["POST"], name=endpoint.name, include_in_schema=False)
    models: tuple[tuple[str, Callable[..., Awaitable[Response]]], ...] = (
        ("/v1/models", list_models),
        ("/v1/models/{model_id:path}", get_model),
    )
    for path, listing in models:
        router.add_api_route(path, listing, methods=["GET"])
        router.add_api_route(path.removeprefix("/v1"), listing, methods=["GET"], include_in_schema=False)
    router.add_api_route("/health", health, methods=["GET"])
    router.add_api_route("/ready", ready, methods=["GET"])
    return router


def _handler(endpoint: Endpoint[RequestT]) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await _serve(request, endpoint)

    return handle


async def list_models(request: Request) -> Response:
    return JSONBody({"object": "list", "data": [model.card() for model in state_of(request.app).models]})


async def get_model(request: Request, model_id: str) -> Response:
    return JSONBody(state_of(request.app).models.get(model_id).card())


async def health() -> Response:
    """Liveness: the process serves HTTP. Upstream reachability is `/ready`."""
    return JSONBody({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: every model's upstream passed its last background health check (`server.ops.readiness`)."""
    ok, body = state_of(request.app).readiness.report()
    return JSONBody(body, status_code=200 if ok else 503)


async def _serve(request: Request, endpoint: Endpoint[RequestT]) -> Response:
    state = state_of(request.app)
    ping_seconds = state.settings.server.ping_seconds
    raw = await read_body(request, state.settings.server.max_body_bytes)
    parsed = parse_request(raw, endpoint.schema)
    model = state.models.get(parsed.model)
    try:
        match model.backend:
            case Translated(upstream=upstream):
                answer = _translated(endpoint, parsed, model, upstream, ping_seconds)
            case Relayed(relay=relay):
                answer = _relayed(endpoint, parsed, orjson.loads(raw), model, relay, ping_seconds)
        return await until_disconnect(request, answer)
    except ProxyError as exc:
        raise endpoint.in_client_terms(exc) from None


async def _translated(
    endpoint: Endpoint[RequestT], parsed: RequestT, model: ServedModel, upstream: Upstream, ping_seconds: float
) -> Response:
    work = await endpoint.plan(parsed, model, upstream)
    plan = work.plan
    if plan.stream:
        fmt = endpoint.stream_format(model.name, include_usage=plan.include_usage, top_logprobs=plan.top_logprobs or 0)
        return _sse(await stream_jobs(upstream, work.jobs, plan, fmt, first_event_timeout=ping_seconds), ping_seconds)
    choices, usage = await complete(upstream, work.jobs, plan)
    return JSONBody(endpoint.answer_format(model.name, top_logprobs=plan.top_logprobs or 0).response(choices, usage))


async def _relayed(
    endpoint: Endpoint[RequestT],
    parsed: RequestT,
    raw: dict[str, Any],
    model: ServedModel,
    relay: Relay,
    ping_seconds: float,
) -> Response:
    plan = relayed.plan_relay(parsed, raw, model)
    if not plan.stream:
        return JSONBody(await relayed.answer(relay, endpoint, plan, model.name))
    opened = await relayed.stream(relay, endpoint, parsed, plan, model.name, first_event_timeout=ping_seconds)
    return _sse(opened, ping_seconds)


def _sse(stream: EventStream, ping_seconds: float) -> SSEResponse:
    return SSEResponse(stream.body, ending=stream.end, ping_seconds=ping_seconds)
