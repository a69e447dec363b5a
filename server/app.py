"""The application factory: settings and an optional upstream transport in, a FastAPI app out.

Every error leaves through the handlers installed here, in OpenAI's envelope (`server.errors`), including
FastAPI's own validation errors and Starlette's 404/405, so no client ever sees `{"detail": ...}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.routing import Route

from server import __version__
from server.api.routes import build_router, schema_components
from server.config import ServerConfig, Settings
from server.edge.access import AccessMiddleware
from server.edge.auth import ApiKeyMiddleware
from server.edge.body import ClientGone
from server.edge.cors import EnvelopeCORSMiddleware, cors_options
from server.edge.errors import error_response
from server.edge.hosts import HostAllowlistMiddleware, guards_hosts
from server.errors import HTTPFailure, InvalidRequest, ProxyError
from server.ops.metrics import Metrics
from server.ops.observed import observer
from server.ops.readiness import Readiness
from server.registry import build_registry
from server.state import AppState, install_state
from server.upstream.admission import Gate
from server.upstream.connect import Transport

__all__ = ["create_app"]

# Status 499 ("client closed request", nginx): logged, never seen by anyone.
CLIENT_CLOSED = 499


def create_app(settings: Settings, *, upstream_transport: Transport | None = None) -> FastAPI:
    metrics = Metrics(model.name for model in settings.models)
    observe = observer(metrics, log_prompts=settings.server.log_prompts)
    registry = build_registry(settings, transport=upstream_transport, observe=observe)
    for model in registry:
        metrics.queued.labels(model.name).set_function(partial(_waiting, model.gate))

    readiness = Readiness(registry, interval=settings.server.ready_interval, ready_when=settings.server.ready_when)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        readiness.start()
        await readiness.first_round(timeout=2.0)
        yield
        await readiness.stop()
        await registry.aclose()

    app = FastAPI(title="hf-openai-proxy", version=__version__, lifespan=lifespan)
    install_state(app, AppState(settings, registry, readiness))
    router = build_router()
    app.include_router(router)
    # Not in the OpenAPI document, whose answers are JSON: Prometheus text is for scrapers.
    app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    _publish_request_schemas(app)
    _install_error_handlers(app)
    _install_middleware(app, router, settings.server, metrics)
    return app


def _waiting(gate: Gate) -> int:
    return gate.waiting


def _install_middleware(app: FastAPI, router: APIRouter, server: ServerConfig, metrics: Metrics) -> None:
    """Innermost first: a request meets them in the reverse order. Preflights are answered by CORS before
    any key is asked for; a refused Host is answered before CORS (a rebinding page is same-origin anyway)."""
    if server.api_keys:
        keys = [key.get_secret_value() for key in server.api_keys]
        app.add_middleware(ApiKeyMiddleware, keys=keys, open_paths=server.open_paths)
    if server.cors_origins:
        app.add_middleware(EnvelopeCORSMiddleware, **cors_options(server))
    if guards_hosts(server):
        app.add_middleware(HostAllowlistMiddleware, allowed_hosts=server.allowed_hosts)
    # The router's own routes too: recent FastAPI keeps an included router as one opaque entry of `app.routes`.
    routes = [*app.routes, *router.routes]
    known_paths = {route.path for route in routes if isinstance(route, Route) and "{" not in route.path}
    app.add_middleware(AccessMiddleware, metrics=metrics, access_log=server.access_log, known_paths=known_paths)


def _publish_request_schemas(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(schema_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProxyError)
    async def proxy_error(_: Request, exc: ProxyError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return error_response(InvalidRequest(f"Invalid '{param}': {first.get('msg', 'invalid value')}", param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # Routing's own 404 and 405 name the method and path, as OpenAI's "Invalid URL (POST /v1/embeddings)".
        route = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return error_response(HTTPFailure(404, f"Invalid URL ({route})", exc.headers, code="unknown_url"))
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "other methods")
            message = f"Method not allowed ({route}); this path accepts {allowed}"
            return error_response(HTTPFailure(405, message, exc.headers, code="method_not_allowed"))
        return error_response(HTTPFailure(exc.status_code, str(exc.detail), exc.headers))

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)
