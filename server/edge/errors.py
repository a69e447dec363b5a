"""The one HTTP rendering of an error (`server.errors`), for the app's handlers and the middlewares that
answer early."""

from __future__ import annotations

from starlette.responses import Response

from server.errors import ProxyError

__all__ = ["error_response"]


def error_response(exc: ProxyError) -> Response:
    return Response(exc.json_bytes(), status_code=exc.status, media_type="application/json", headers=exc.headers)
