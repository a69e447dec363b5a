"""What a translated request asks the upstream for: the plan shared by its choices, and one job per choice."""

from __future__ import annotations

from dataclasses import dataclass

from server.upstream.tgi_wire import GenerateParameters

__all__ = ["Job", "Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask the upstream for each choice, and how to shape the answer."""

    parameters: GenerateParameters
    n: int
    stops: tuple[str, ...]  # every stop the proxy enforces (request, template, config)
    top_logprobs: int | None  # None: no logprobs requested
    stream: bool
    include_usage: bool

    def for_choice(self, j: int) -> GenerateParameters:
        """Parameters of the j-th of `n` choices: a given seed becomes seed + j so choices differ."""
        seed = self.parameters.get("seed")
        if j == 0 or seed is None:
            return self.parameters
        return {**self.parameters, "seed": as_u64(seed + j)}


def as_u64(seed: int) -> int:
    """A seed as TGI takes it (a u64). OpenAI's seed is a signed 64-bit integer (openai-openapi
    `CreateChatCompletionRequest.seed`), so a negative one wraps to the u64 with the same bits: every seed a
    client may send is a valid, distinct TGI seed, and choice j's `seed + j` wraps the same way."""
    return seed % 2**64


@dataclass(frozen=True, slots=True)
class Job:
    """One upstream generation: choice `index` of the answer."""

    index: int
    prompt: str
    prompt_index: int  # usage counts each prompt once, however many choices it has
    parameters: GenerateParameters
    prefix: str = ""  # completions `echo`: sent before the generated text
