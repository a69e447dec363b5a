"""CORS for browser clients (`server.cors_origins`, `server.cors_headers`): Starlette's middleware, with a
refused preflight answered in OpenAI's error envelope like every other error.

It sits outside the API-key check (`server.app`), so a preflight never needs a key and a 401 still carries
the CORS headers a browser needs to show it to the page. Private Network Access preflights (a public page
calling a proxy on localhost, Chrome) succeed for the configured origins only.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from server.config import ServerConfig
from server.edge.errors import error_response
from server.errors import InvalidRequest

__all__ = ["EnvelopeCORSMiddleware", "cors_options"]

# Response headers a page may read: the request id to quote, the overhead figure, retry hints.
_EXPOSED = ("x-request-id", "x-proxy-overhead-ms", "retry-after", "x-should-retry")


def cors_options(server: ServerConfig) -> dict[str, Any]:
    return {
        "allow_origins": server.cors_origins,
        "allow_headers": server.cors_headers,
        "allow_methods": ("GET", "POST"),
        "allow_private_network": True,
        "expose_headers": _EXPOSED,
    }


class EnvelopeCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        refusal = error_response(
            InvalidRequest(
                f"CORS preflight refused ({bytes(response.body).decode()}); allowed origins and headers are "
                "`server.cors_origins` and `server.cors_headers`.",
                code="cors_preflight_refused",
            )
        )
        for name, value in response.headers.items():
            if name.startswith("access-control-") or name == "vary":
                refusal.headers[name] = value
        return refusal
