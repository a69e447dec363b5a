"""The backend of one configured model: the one place that picks an upstream implementation by kind."""

from __future__ import annotations

import httpx

from server.config import ConfigError, UpstreamConfig
from server.upstream.admission import Gate
from server.upstream.http import UpstreamHTTP
from server.upstream.kinds import Backend, Relayed, Translated
from server.upstream.local.model import LocalModel
from server.upstream.openai import OpenAIClient, read_openai_error
from server.upstream.tgi import TGI_ROUTES, TGIClient, hf_inference_routes, read_tgi_error

__all__ = ["Transport", "connect"]

# What tests put behind every upstream client (`create_app(upstream_transport=...)`).
Transport = httpx.AsyncBaseTransport


def connect(
    config: UpstreamConfig, *, model: str, gate: Gate, transport: Transport | None = None, where: str = "upstream"
) -> Backend:
    """The backend for one configured model's upstream, its calls admitted through `gate`; `transport` lets
    tests put a fake behind it."""
    if config.kind == "tgi":
        http = UpstreamHTTP(config, gate=gate, read_error=read_tgi_error, transport=transport)
        return Translated(TGIClient(http, TGI_ROUTES))
    if config.kind == "hf-inference":
        http = UpstreamHTTP(config, gate=gate, read_error=read_tgi_error, transport=transport)
        return Translated(TGIClient(http, hf_inference_routes(config.model_id or model)))
    if config.kind == "openai":
        return Relayed(OpenAIClient(UpstreamHTTP(config, gate=gate, read_error=read_openai_error, transport=transport)))
    if config.kind == "local":
        local = LocalModel(config.local, where=where)
        return Translated(local, in_process=local)
    raise ConfigError(
        f"config error at {where}.kind: upstream kind '{config.kind}' is not available in this version"
        " (supported: tgi, hf-inference, openai, local)"
    )
