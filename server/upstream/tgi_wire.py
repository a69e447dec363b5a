"""TGI's native wire types, named as in TGI's `docs/openapi.json`.

They are `TypedDict`s on purpose: a stream event is parsed once by orjson into plain dicts and read by key,
so the per-token path builds no model objects. Only the keys the proxy reads are declared.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

FinishReason = Literal["length", "eos_token", "stop_sequence"]


class Token(TypedDict):
    id: int
    text: str
    logprob: float | None  # NaN is serialised by TGI as null
    special: bool


class StreamDetails(TypedDict):
    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None
    input_length: NotRequired[int]  # TGI >= 2.3.0


class StreamResponse(TypedDict):
    """One `/generate_stream` event; `generated_text` and `details` are set on the last one only."""

    index: NotRequired[int]  # absent before TGI 1.4
    token: Token
    top_tokens: NotRequired[list[Token]]
    generated_text: str | None
    details: StreamDetails | None


class PrefillToken(TypedDict):
    id: int
    text: str
    logprob: float | None


class Details(TypedDict):
    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None
    prefill: list[PrefillToken]
    tokens: list[Token]
    top_tokens: NotRequired[list[list[Token]]]


class GenerateResponse(TypedDict):
    generated_text: str
    details: NotRequired[Details]


class GenerateParameters(TypedDict, total=False):
    """`parameters` of a `/generate` request; always sent with explicit `do_sample` and `details`."""

    do_sample: bool
    details: bool
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    typical_p: float
    repetition_penalty: float
    frequency_penalty: float
    stop: list[str]
    seed: int
    top_n_tokens: int
    decoder_input_details: bool
    return_full_text: bool
    best_of: int
    truncate: int
    watermark: bool
    grammar: dict[str, Any]
    adapter_id: str


class Info(TypedDict, total=False):
    model_id: str
    max_input_tokens: int
    max_input_length: int  # name before TGI 2.1
    max_total_tokens: int
    max_stop_sequences: int
    max_top_n_tokens: int
    max_best_of: int
    version: str
