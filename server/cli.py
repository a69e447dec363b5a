"""`hf-openai-proxy` and `python -m server`: parse flags, build settings at the edge, run uvicorn.

With `--workers N` uvicorn's supervisor binds the socket once and starts N worker processes, each of which
imports `worker_app` and builds its own app from the same flags (handed over in an environment variable, as
only an import string crosses into a spawned worker). The proxy keeps no shared state, so nothing more is needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from server import __version__
from server.app import create_app
from server.config import ConfigError, load_settings
from server.ops.logs import configure_logging

LOG_LEVELS = ("debug", "info", "warning", "error")
# The flags a spawned worker builds its settings from: {"config": path, "overrides": {...}}.
WORKER_ARGS_ENV = "HF_OPENAI_PROXY_WORKER_ARGS"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hf-openai-proxy",
        description="OpenAI-compatible API in front of Hugging Face text-generation servers.",
    )
    parser.add_argument("--config", type=Path, default=Path("config.yaml"), help="YAML config (default ./config.yaml)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8000)")
    parser.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, help="debug, info, warning or error (any case)"
    )
    parser.add_argument("--workers", type=worker_count, default=1, help="server processes sharing the port (default 1)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server = {name: getattr(args, name) for name in ("host", "port", "log_level") if getattr(args, name) is not None}
    return {"server": server} if server else {}


def worker_count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = flag_overrides(args)
    try:
        # Built here even with several workers, so a bad config stops the start before any worker is spawned.
        settings = load_settings(args.config, overrides)
        configure_logging(settings.server)
        app = create_app(settings) if args.workers == 1 else None
    except ConfigError as exc:
        sys.stderr.write(f"hf-openai-proxy: {exc}\n")
        raise SystemExit(2) from None
    server = settings.server
    # uvicorn's records go through the handler set up above; its access log is off, ours has one line a request.
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "log_level": server.log_level,
        "log_config": None,
        "access_log": False,
    }
    if app is not None:
        settle_heap()
        uvicorn.run(app, **options)
        return
    os.environ[WORKER_ARGS_ENV] = json.dumps({"config": str(args.config.resolve()), "overrides": overrides})
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=args.workers, **options)


def worker_app() -> FastAPI:
    """The app of one of several worker processes, from the flags `main` validated."""
    handed = json.loads(os.environ[WORKER_ARGS_ENV])
    settings = load_settings(Path(handed["config"]), handed["overrides"])
    configure_logging(settings.server)
    app = create_app(settings)
    settle_heap()
    return app


def settle_heap() -> None:
    """Take what lives as long as the process (modules, the app, its routes, templates and schemas) out of
    the cycle collector's sight: collections walking FastAPI's, pydantic's and Jinja's objects over and over
    were a sixth of the CPU of a streamed token (bench/RESULTS.md). Collection thresholds stay Python's: a
    higher one saved another 10 % of a token's CPU but held 15 MB more garbage at 1000 open streams.
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    gc.collect()
    gc.freeze()
