"""Run any ASGI app with uvicorn on a real loopback socket, in a background thread.

    with LoopbackServer(fake.app) as upstream, LoopbackServer(proxy_app, lifespan="on") as proxy:
        httpx.get(f"{proxy.url}/health")

Each server binds 127.0.0.1 on a port chosen by the OS, runs its own event loop in its own daemon thread
(no signal handlers), and is ready when ``__enter__`` returns.  Several may run at once.  Real sockets
give what ``httpx.ASGITransport`` cannot: incremental streaming, client disconnects, timeouts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals belong to the main thread (pytest); this server is stopped via should_exit.
        yield


class LoopbackServer:
    """Context manager serving ``app`` at ``self.url`` ("http://127.0.0.1:PORT").

    ``config`` overrides reach ``uvicorn.Config`` (e.g. ``http="h11"``, ``loop="asyncio"``).  On exit the
    server stops accepting, lets in-flight responses finish for ``graceful_timeout`` seconds, then
    cancels them.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        startup_timeout: float = 10.0,
        graceful_timeout: float = 2.0,
        **config: Any,
    ) -> None:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "log_level": "warning",
            "log_config": None,  # leave the process' logging setup alone; records propagate to pytest
            "access_log": False,
            "lifespan": lifespan,
            "ws": "none",
            "timeout_graceful_shutdown": graceful_timeout,
            **config,
        }
        self._server = _ThreadServer(uvicorn.Config(app, **settings))
        self._startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        self._thread = threading.Thread(target=self._server.run, name="loopback-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn failed to start (see the log output)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start within {self._startup_timeout} s")
            time.sleep(0.005)
        self.host, self.port = self._server.servers[0].sockets[0].getsockname()[:2]

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            self._server.force_exit = True
            thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("uvicorn thread did not stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
