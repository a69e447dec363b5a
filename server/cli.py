"""`hf-openai-proxy` and `python -m server`: parse flags, build settings at the edge, run uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from server import __version__
from server.app import create_app
from server.config import ConfigError, load_settings
from server.logs import configure_logging

LOG_LEVELS = ("debug", "info", "warning", "error")


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server = {name: getattr(args, name) for name in ("host", "port", "log_level") if getattr(args, name) is not None}
    return {"server": server} if server else {}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config, flag_overrides(args))
        configure_logging(settings.server)
        app = create_app(settings)
    except ConfigError as exc:
        sys.stderr.write(f"hf-openai-proxy: {exc}\n")
        raise SystemExit(2) from None
    server = settings.server
    # uvicorn's records go through the handler set up above; its access log is off, ours has one line a request.
    uvicorn.run(app, host=server.host, port=server.port, log_level=server.log_level, log_config=None, access_log=False)
