"""Bearer API keys (`server.api_keys`, with those read from `api_keys_env` / `api_keys_file`): when keys are
configured, every path but `server.open_paths` needs one; CORS preflights (`OPTIONS`) never do.

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every configured key, so timing
tells neither how much of a guess was right nor how long a key is. The refusal is answered here, inside the
CORS layer, so a browser page can read it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from server.edge.errors import error_response
from server.errors import AuthenticationFailed

__all__ = ["ApiKeyMiddleware"]


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, keys: Sequence[str], open_paths: Collection[str]) -> None:
        self.app = app
        self._digests = [_digest(key.encode()) for key in keys]
        self._open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and scope["path"] not in self._open_paths
            and not self._accepts(scope)
        ):
            refusal = AuthenticationFailed(
                "Incorrect API key provided. Send one of the configured keys as `Authorization: Bearer <key>`."
            )
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _accepts(self, scope: Scope) -> bool:
        scheme, _, key = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = _digest(key.strip().encode("latin-1"))  # the header's own bytes
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, presented)
        return matched


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()
