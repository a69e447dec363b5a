"""Log lines, plain (`key=value` fields) or one JSON object each (`server.log_format`), every one carrying the
id of the request it was written for.

Structured values travel as `extra=fields(...)`; both formats print them. Nothing here logs request headers,
query strings or bodies: keys and tokens cannot reach the log by that route, and prompts and outputs are
logged only by `server.ops.observed` when `server.log_prompts` asks for it.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from server.config import ServerConfig
from server.context import current_request

__all__ = ["JsonFormatter", "PlainFormatter", "RequestIdFilter", "configure_logging", "fields"]

# httpx logs every upstream request at INFO with its full URL, which may carry credentials, and the access
# log already says what happened once per request.
_QUIET_LOGGERS = ("httpx", "httpcore")
_NO_REQUEST = "-"
# Printable ASCII but space, `"`, `=` and `\`: such a value needs no quotes.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")


def fields(**values: Any) -> dict[str, Any]:
    """`logger.info("...", extra=fields(model=..., status=...))`."""
    return {"fields": values}


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request's id; a handler filter, so it sees every logger's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request.get()
        record.request_id = context.request_id if context is not None else _NO_REQUEST
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s", defaults={"request_id": _NO_REQUEST}
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        values: dict[str, Any] = getattr(record, "fields", {})
        return line + "".join(f" {key}={_plain(value)}" for key, value in values.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", _NO_REQUEST),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _plain(value: Any) -> str:
    """logfmt-style: bare when unambiguous, else a JSON string, so a value can never forge another line."""
    text = value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else orjson.dumps(text).decode()


def configure_logging(server: ServerConfig, stream: TextIO | None = None) -> logging.Handler:
    """The process' logging, set once at start by `server.cli` (stderr unless `stream` is given)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if server.log_format == "json" else PlainFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(server.log_level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # library warnings become log lines too, so a JSON log stays all JSON
    return handler
