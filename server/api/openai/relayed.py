"""The relayed path's planner (kind `openai`): the client's body goes to the upstream's own endpoint, and the
answer comes back normalised (`server.generation.relay`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.api.endpoint import Endpoint, RequestT
from server.api.openai.translate import stop_list, wants_usage
from server.generation.relay import OnlyCall, RelayedChoices, relayed_response
from server.generation.run import EventStream, open_stream
from server.registry import ServedModel
from server.upstream.base import Relay

__all__ = ["RelayPlan", "answer", "plan_relay", "stream"]


@dataclass(frozen=True, slots=True)
class RelayPlan:
    """What goes to the upstream, and what the proxy enforces on the way back."""

    body: dict[str, Any]
    stops: tuple[str, ...]  # the client's and the model's; the upstream is asked for them and the proxy checks
    include_usage: bool
    stream: bool


def plan_relay(parsed: RequestT, raw: Mapping[str, Any], model: ServedModel) -> RelayPlan:
    """The client's own body, with the upstream's name for the model, the configured defaults for fields the
    client left out, and every stop string (the client's and the model's)."""
    stops = stop_list(parsed.stop, model.config.stop)
    body = {key: value for key, value in model.config.defaults.items() if raw.get(key) is None}
    body.update(raw)
    body["model"] = model.config.upstream.model_id or model.name
    if stops:
        body["stop"] = list(stops)
    return RelayPlan(body, stops, wants_usage(parsed), bool(body.get("stream")))


async def answer(relay: Relay, endpoint: Endpoint[RequestT], plan: RelayPlan, model: str) -> dict[str, Any]:
    """The whole answer, normalised."""
    upstream_answer = await relay.complete(endpoint.path, plan.body)
    return relayed_response(
        upstream_answer, endpoint.answer_format(model, top_logprobs=0), plan.stops, endpoint.choice_shape
    )


async def stream(
    relay: Relay,
    endpoint: Endpoint[RequestT],
    parsed: RequestT,
    plan: RelayPlan,
    model: str,
    *,
    first_event_timeout: float,
) -> EventStream:
    """The normalised SSE body, see `server.generation.run.open_stream`."""
    fmt = endpoint.stream_format(model, include_usage=plan.include_usage, top_logprobs=0)
    consumer = RelayedChoices(
        fmt, plan.stops, endpoint.choice_shape, choices=endpoint.choice_count(parsed), include_usage=plan.include_usage
    )
    return await open_stream(
        [OnlyCall()],
        lambda _: relay.stream(endpoint.path, plan.body),
        consumer,
        fmt,
        prelude=consumer.prelude(),
        first_event_timeout=first_event_timeout,
    )
