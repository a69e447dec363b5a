"""What the load generator talks to, each started as a process of its own and stopped after its figures.

- `direct`: the fake TGI itself (native API), the floor of everything;
- `relay`: `bench.relay` in front of the fake (native API), the floor of a proxy;
- `proxy`: this project (`python -m server`), OpenAI chat API over the fake's `/generate_stream`;
- `litellm`: LiteLLM's proxy (`bench.litellm`), OpenAI chat API over the fake's `/v1/chat/completions`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.litellm import litellm_process

__all__ = ["Running", "Target", "free_port", "start"]

ROOT = Path(__file__).resolve().parents[1]
TARGET_CORE = "0"  # the process measured; the fake and the load generator share the other core
HELPER_CORE = "1"

PROXY_CONFIG = """\
models:
  - name: bench
    upstream:
      kind: tgi
      url: http://127.0.0.1:{upstream}
      # 1000 held streams: the defaults (128 at once, 256 waiting) are a production guard, not a limit of the
      # proxy, and would answer 429 to the rest
      max_concurrency: 2048
      max_queue: 2048
      max_connections: 2048
    chat_template: chatml
server:
  port: {port}
  log_level: warning
"""


@dataclass(frozen=True)
class Target:
    name: str  # as printed: direct, relay, proxy, proxy-2w, litellm
    kind: str  # direct, relay, proxy, litellm
    workers: int = 1

    @property
    def api(self) -> str:
        return "native" if self.kind in ("direct", "relay") else "chat"


@dataclass
class Running:
    target: Target
    port: int
    process: subprocess.Popen[bytes] | None = None  # None for `direct`: the fake is measured elsewhere
    log: Path | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        for process in [p for p in (self.process, *self.extra) if p is not None]:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command]


def start(target: Target, fake_port: int, workdir: Path) -> Running:
    if target.kind == "direct":
        return Running(target, fake_port)
    port = free_port()
    log = workdir / f"{target.name}.log"
    environment: dict[str, str] | None = None
    if target.kind == "relay":
        command = [sys.executable, "-m", "bench.relay", "--port", str(port), "--upstream-port", str(fake_port)]
        ready = _listening
    elif target.kind == "proxy":
        config = workdir / f"{target.name}.yaml"
        config.write_text(PROXY_CONFIG.format(upstream=fake_port, port=port))
        command = [sys.executable, "-m", "server", "--config", str(config), "--workers", str(target.workers)]
        ready = _healthy
    else:
        command, environment = litellm_process(f"http://127.0.0.1:{fake_port}", port, workdir)
        ready = _alive
    if target.workers == 1:  # several workers are given both cores: that is what they are for
        command = pinned(TARGET_CORE, command)
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT)
    running = Running(target, port, process, log)
    deadline = time.monotonic() + (240 if target.kind == "litellm" else 60)
    while not ready(port):
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"{target.name} did not start; its log: {log}\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return running


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _alive(port: int) -> bool:
    """LiteLLM's `/health` calls every model; its liveliness route only says the server answers."""
    return _healthy(port, "/health/liveliness")


def _healthy(port: int, path: str = "/health") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
