"""The `Host` allowlist: a guard against DNS rebinding.

A web page on `evil.example` can make its name resolve to 127.0.0.1 and then call the proxy as if it were
same-origin, CORS notwithstanding; the browser still sends `Host: evil.example`. So a proxy listening on
loopback answers only for loopback names (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`, any port) plus
`server.allowed_hosts`; anything else is refused with 403 `host_not_allowed` (403, not 400: the request is
well formed, this server just does not serve that host).

When to check: bound to a loopback address, every connection that arrives on a loopback socket (an
in-process ASGI call has no socket and nothing to rebind). Bound elsewhere (`0.0.0.0`, a container), only
when `allowed_hosts` is set. `"*"` in `allowed_hosts` turns the check off. A request without `Host`
(HTTP/1.0) cannot come from a browser and is let through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from server.config import ServerConfig
from server.edge.errors import error_response
from server.errors import HostNotAllowed

__all__ = ["HostAllowlistMiddleware", "guards_hosts", "is_loopback"]

_ANY_HOST = "*"


def is_loopback(host: str) -> bool:
    """A loopback name or address: `localhost`, `*.localhost` (RFC 6761), 127.0.0.0/8, ::1."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def guards_hosts(server: ServerConfig) -> bool:
    return _ANY_HOST not in server.allowed_hosts and (bool(server.allowed_hosts) or is_loopback(server.host))


class HostAllowlistMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_hosts: Collection[str]) -> None:
        self.app = app
        self._allowed = frozenset(host.lower().rstrip(".") for host in allowed_hosts)
        self._every_connection = bool(self._allowed)  # configured: bound anywhere, every request is checked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._applies(scope):
            host = Headers(scope=scope).get("host")
            if host is not None and not self._allows(_name(host)):
                refusal = HostNotAllowed(
                    f"The Host header {host[:100]!r} is not allowed: this server answers for loopback names and "
                    "the hosts in `server.allowed_hosts`."
                )
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _applies(self, scope: Scope) -> bool:
        if self._every_connection:
            return True
        local = scope.get("server")
        return local is not None and is_loopback(str(local[0]))

    def _allows(self, name: str) -> bool:
        return is_loopback(name) or name in self._allowed


def _name(host: str) -> str:
    """`Host` without its port: `example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return (name if colon and port.isdigit() and ":" not in name else host).rstrip(".")
