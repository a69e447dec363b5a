"""Prometheus metrics (`GET /metrics`): one registry per app, so apps built side by side (tests, workers)
never share counters.

Who records what: `server.edge.access` the per-request series (requests, duration, the proxy's own overhead,
in-flight); `server.ops.observed` the per-upstream-call series (latency, time to first token, tokens, errors).
`queued` is for the upstream backpressure gate: requests waiting for an upstream slot, per model.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["PREFIX", "Metrics"]

PREFIX = "hf_openai_proxy_"

# Generations take seconds to minutes; the proxy's own share of a request is micro- to milliseconds.
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, models: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            f"{PREFIX}requests",
            "Requests answered, by served model ('' when none was reached), endpoint and HTTP status.",
            ("model", "endpoint", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}request_duration_seconds",
            "Whole requests, from arrival to the last byte sent.",
            ("endpoint",),
            buckets=_UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            f"{PREFIX}overhead_seconds",
            "Time the proxy itself spent before the response headers, upstream waits excluded "
            "(the x-proxy-overhead-ms header).",
            ("endpoint",),
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(f"{PREFIX}requests_in_flight", "Requests being served now.", registry=registry)
        self.queued = Gauge(
            f"{PREFIX}queued_requests",
            "Requests waiting for an upstream slot, per model.",
            ("model",),
            registry=registry,
        )
        self.upstream_in_flight = Gauge(
            f"{PREFIX}upstream_requests_in_flight",
            "Upstream generations running now (n choices count n).",
            ("model",),
            registry=registry,
        )
        self.upstream_duration = Histogram(
            f"{PREFIX}upstream_request_duration_seconds",
            "Upstream generations, from the call to the last byte (mode: generate or stream).",
            ("model", "mode"),
            buckets=_UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            f"{PREFIX}time_to_first_token_seconds",
            "Streamed upstream generations, from the call to the first token.",
            ("model",),
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            f"{PREFIX}prompt_tokens",
            "Prompt tokens of upstream generations, as the upstream counts them.",
            ("model",),
            registry=registry,
        )
        self.completion_tokens = Counter(
            f"{PREFIX}completion_tokens", "Tokens the upstream generated and sent.", ("model",), registry=registry
        )
        self.upstream_errors = Counter(
            f"{PREFIX}upstream_errors",
            "Failed upstream calls, by error code (e.g. upstream_unreachable, rate_limit_exceeded).",
            ("model", "kind"),
            registry=registry,
        )
        for model in models:  # present from the start, so a dashboard sees 0 rather than no series
            self.queued.labels(model)
            self.upstream_in_flight.labels(model)

    async def endpoint(self, request: Request) -> Response:
        """`GET /metrics`, in the exposition format the scraper asks for (Prometheus text or OpenMetrics)."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), headers={"content-type": content_type})
