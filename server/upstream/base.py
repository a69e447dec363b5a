"""What the request path needs from any text-generation backend (`server.upstream.tgi` implements `Upstream`),
or from an OpenAI-style one (`server.upstream.openai` implements `Relay`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from server.upstream.tgi_wire import GenerateParameters, GenerateResponse, StreamResponse


@dataclass(frozen=True, slots=True)
class Limits:
    """The upstream's validation limits (TGI `/info`), with TGI's launcher defaults until it answers."""

    max_total_tokens: int | None = None
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_best_of: int = 2


@dataclass(frozen=True, slots=True)
class Generated:
    response: GenerateResponse
    prompt_tokens: int | None  # from the `x-prompt-tokens` header when the upstream sends it


class Upstream(Protocol):
    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated: ...

    def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        """Events up to and including the final one, in batches of those that arrived together; closing the
        iterator closes the upstream request."""
        ...

    async def limits(self) -> Limits: ...

    async def count_tokens(self, prompt: str) -> int | None: ...

    async def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


class Relay(Protocol):
    """An OpenAI-style upstream (kind `openai`): requests go through, answers come back to be normalised
    (`server.generation.relay`). A model says which it has (`server.upstream.kinds`)."""

    async def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]: ...

    async def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


ModelState = Literal["loading", "loaded", "unavailable"]


@dataclass(frozen=True, slots=True)
class ShippedTemplate:
    """The chat template a model ships (its tokenizer's `chat_template`), as data: the registry turns it into a
    `server.prompts.ChatTemplate`, so no upstream needs the template engine."""

    source: str
    bos_token: str | None
    eos_token: str | None


class InProcessModel(Protocol):
    """Optional, for an upstream that holds its model in this process (kind `local`): whether it is loaded,
    for `/v1/models` and `/ready`, and the chat template its tokenizer ships, used when the config gives none."""

    def state(self) -> ModelState: ...

    async def shipped_template(self) -> ShippedTemplate | None: ...
