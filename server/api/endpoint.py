"""The endpoint descriptor: everything that tells one generation endpoint from another, as data.

A route handler (`server.api.routes`) serves any descriptor the same way: read and validate the body as
`schema`, find the model, then plan it for the model's kind (translated: `plan`; relayed:
`server.api.openai.relayed`) and answer in the endpoint's `stream_format` or `answer_format`. A new endpoint
is a descriptor, a request schema and a format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from server.api.openai.protocol import SamplingFields
from server.errors import ProxyError
from server.generation.formats.base import AnswerFormat, StreamFormat
from server.generation.plan import Job, Plan
from server.generation.relay import ChoiceShape
from server.registry import ServedModel
from server.upstream.base import Upstream

__all__ = ["Endpoint", "Work"]

RequestT = TypeVar("RequestT", bound=SamplingFields)


@dataclass(frozen=True, slots=True)
class Work:
    """A translated request, planned: the upstream jobs and the plan they share."""

    jobs: list[Job]
    plan: Plan


class StreamFormatFactory(Protocol):
    def __call__(self, model: str, *, include_usage: bool, top_logprobs: int) -> StreamFormat: ...


class AnswerFormatFactory(Protocol):
    def __call__(self, model: str, *, top_logprobs: int) -> AnswerFormat: ...


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[RequestT]):
    path: str  # the OpenAI path; also where a relayed request goes on the upstream
    name: str  # the route's name, which names its operation in the OpenAPI document
    schema: type[RequestT]
    # the proxy's planner for translated kinds
    plan: Callable[[RequestT, ServedModel, Upstream], Awaitable[Work]]
    stream_format: StreamFormatFactory
    answer_format: AnswerFormatFactory
    # where the choices of an OpenAI-style upstream's answer keep their text
    choice_shape: ChoiceShape
    # how many choices a relayed request asks for (the upstream fans out itself)
    choice_count: Callable[[RequestT], int]
    # an upstream's parameter names (TGI's) -> this endpoint's, for the `param` of an error
    param_names: Mapping[str, str]

    def in_client_terms(self, exc: ProxyError) -> ProxyError:
        """`exc`, its `param` named as this endpoint's clients know it."""
        if exc.param is not None and exc.param in self.param_names:
            exc.param = self.param_names[exc.param]
        return exc
