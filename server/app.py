"""The application factory: settings and an optional upstream transport in, a FastAPI app out.

Every error leaves through the handlers installed here, in OpenAI's envelope (`server.errors`), including
FastAPI's own validation errors and Starlette's 404/405, so no client ever sees `{"detail": ...}`.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import __version__
from server.auth import ApiKeyMiddleware
from server.config import Settings
from server.errors import HTTPFailure, InvalidRequest, ProxyError
from server.models import build_registry
from server.routes import ClientGone, router, schema_components
from server.upstream import Transport

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# Status 499 ("client closed request", nginx): logged, never seen by anyone.
CLIENT_CLOSED = 499


def create_app(settings: Settings, *, upstream_transport: Transport | None = None) -> FastAPI:
    registry = build_registry(settings, transport=upstream_transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await registry.aclose()

    app = FastAPI(title="hf-openai-proxy", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.models = registry
    app.include_router(router)
    _publish_request_schemas(app)
    _install_error_handlers(app)
    if settings.server.api_keys:
        app.add_middleware(ApiKeyMiddleware, keys=[key.get_secret_value() for key in settings.server.api_keys])
    app.add_middleware(RequestIdMiddleware)
    return app


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
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return _error_response(InvalidRequest(f"Invalid '{param}': {first.get('msg', 'invalid value')}", param=param))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _error_response(HTTPFailure(exc.status_code, str(exc.detail), exc.headers))

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)


def _error_response(exc: ProxyError) -> Response:
    return Response(exc.json_bytes(), status_code=exc.status, media_type="application/json", headers=exc.headers)


_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdMiddleware:
    """Echo the client's `x-request-id` (or a new one) on every response, streams included; and be the
    last line of defence: an exception nothing else handled becomes a 500 envelope with no internals.

    Plain ASGI rather than `BaseHTTPMiddleware`, which would buffer streams and hide disconnects.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"x-request-id"), "")
        if not _CLIENT_REQUEST_ID.match(request_id):
            request_id = f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ProxyError as exc:  # raised by middleware, outside the app's own handlers
            if started:
                raise
            await _error_response(exc)(scope, receive, send_with_id)
        except Exception:
            logger.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            failure = ProxyError("The server had an error while processing your request.")
            await _error_response(failure)(scope, receive, send_with_id)
