"""`hf-openai-proxy` and `python -m server`: parse flags, build settings at the edge, run uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from server import __version__
from server.app import create_app
from server.config import ConfigError, load_settings

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
        app = create_app(settings)
    except ConfigError as exc:
        sys.stderr.write(f"hf-openai-proxy: {exc}\n")
        raise SystemExit(2) from None
    level = settings.server.log_level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level=level)
