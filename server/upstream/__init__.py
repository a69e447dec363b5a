"""Backends the proxy can talk to. Only this package imports httpx."""

from __future__ import annotations

import httpx

from server.config import ConfigError, UpstreamConfig
from server.upstream.base import Generated, InProcessModel, Limits, ModelState, Upstream
from server.upstream.local import LocalModel
from server.upstream.tgi import TGIClient

__all__ = ["Generated", "InProcessModel", "Limits", "ModelState", "Transport", "Upstream", "connect"]

Transport = httpx.AsyncBaseTransport


def connect(config: UpstreamConfig, *, transport: Transport | None = None, where: str = "upstream") -> Upstream:
    """The client for one configured upstream; `transport` lets tests put a fake behind it."""
    if config.kind == "tgi":
        return TGIClient(config, transport=transport)
    if config.kind == "local":
        return LocalModel(config.local, where=where)
    raise ConfigError(
        f"config error at {where}.kind: upstream kind '{config.kind}' is not available in this version "
        "(supported: tgi, local)"
    )
