"""Bearer API keys (`server.api_keys`): every route but the open ones needs one when keys are configured.

Keys are compared with `hmac.compare_digest` against every configured key, so timing tells nothing about
how much of a guess was right. CORS preflights (`OPTIONS`) never need a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import AuthenticationFailed

__all__ = ["OPEN_PATHS", "ApiKeyMiddleware"]

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, keys: Sequence[str]) -> None:
        self.app = app
        self._keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
            if not self._accepts(scope):
                raise AuthenticationFailed(
                    "Incorrect API key provided. Send one of the configured keys as `Authorization: Bearer <key>`."
                )
        await self.app(scope, receive, send)

    def _accepts(self, scope: Scope) -> bool:
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, key = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        matched = False
        for candidate in self._keys:
            matched |= hmac.compare_digest(candidate, key.strip())
        return matched
