"""TGI's validation rules (§7): server.rs's endpoint checks and ``Validation::validate``, in TGI's order.

Messages are TGI's ``ValidationError`` texts; a ``ValidRequest`` carries the tokenized (and truncated) prompt,
the effective ``max_new_tokens`` (TGI 3 allows ``max_total_tokens - input_length`` without one, §7) and the
seed, drawn from the fake's ``random.Random`` when absent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from fakes.tgi.errors import ValidationError
from fakes.tgi.model import Piece, tokenize
from fakes.tgi.request import GenerateRequest
from fakes.tgi.settings import FakeTGISettings


@dataclass(frozen=True)
class ValidRequest:
    inputs: str
    prompt: tuple[Piece, ...]  # after truncation
    max_new_tokens: int
    stop: tuple[str, ...]
    details: bool
    decoder_input_details: bool
    top_n_tokens: int
    return_full_text: bool
    seed: int
    sampling: bool
    best_of: int

    @property
    def input_length(self) -> int:
        return len(self.prompt)


def check_endpoint_rules(settings: FakeTGISettings, params: dict[str, Any], *, stream: bool) -> None:
    """Checks TGI's server.rs makes before ``validate()``: best_of / prefill on streams, best_of limits."""
    best_of = params["best_of"]
    if stream:
        if (1 if best_of is None else best_of) != 1:
            raise ValidationError("`best_of` != 1 is not supported when streaming tokens")
        if params["decoder_input_details"]:
            raise ValidationError("`decoder_input_details` == true is not supported when streaming tokens")
    elif best_of is not None and best_of > 1:
        if settings.max_best_of == 1:
            raise ValidationError("`best_of` != 1 is not allowed for this endpoint")
        if best_of > settings.max_best_of:
            raise ValidationError(f"`best_of` must be > 0 and <= {settings.max_best_of}. Given: {best_of}")


def validate(settings: FakeTGISettings, request: GenerateRequest, rng: random.Random) -> ValidRequest:
    """TGI's ``Validation::validate`` (router/src/validation.rs), checks in the same order."""
    p = request.parameters
    best_of = 1 if p["best_of"] is None else p["best_of"]
    warpers = any(p[name] is not None for name in ("temperature", "top_k", "top_p", "typical_p"))
    if best_of > 1 and not (p["do_sample"] or warpers):
        raise ValidationError("you must use sampling when `best_of` is > 1")
    if p["temperature"] is not None and p["temperature"] <= 0:
        raise ValidationError("`temperature` must be strictly positive")
    if p["repetition_penalty"] is not None and p["repetition_penalty"] <= 0:
        raise ValidationError("`repetition_penalty` must be strictly positive")
    if p["frequency_penalty"] is not None and not -2.0 <= p["frequency_penalty"] <= 2.0:
        raise ValidationError("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p["top_p"] is not None and not 0 < p["top_p"] < 1:
        raise ValidationError("`top_p` must be > 0.0 and < 1.0")
    if p["typical_p"] is not None and not 0 < p["typical_p"] < 1:
        raise ValidationError("`typical_p` must be > 0.0 and < 1.0")
    if p["top_k"] is not None and p["top_k"] <= 0:
        raise ValidationError("`top_k` must be strictly positive")
    if p["max_new_tokens"] == 0:
        raise ValidationError("`max_new_tokens` must be strictly positive")
    if len(p["stop"]) > settings.max_stop_sequences:
        raise ValidationError(
            f"`stop` supports up to {settings.max_stop_sequences} stop sequences. Given: {len(p['stop'])}"
        )
    if p["seed"] is not None and best_of > 1:
        raise ValidationError("`seed` must not be set when `best_of` > 1")
    seed: int = rng.getrandbits(64) if p["seed"] is None else p["seed"]
    top_n = p["top_n_tokens"] or 0
    if top_n > settings.max_top_n_tokens:
        raise ValidationError(f"`top_n_tokens` must be >= 0 and <= {settings.max_top_n_tokens}. Given: {top_n}")
    if not request.inputs:
        raise ValidationError("`inputs` cannot be empty")
    truncate = p["truncate"]
    if truncate is not None and not 0 < truncate <= settings.max_input_tokens:
        raise ValidationError(
            f"`truncate` must be strictly positive and less than {settings.max_input_tokens}. Given: {truncate}"
        )
    prompt = tokenize(request.inputs)
    if truncate is not None:
        prompt = prompt[-truncate:]
    input_length = len(prompt)
    max_new = p["max_new_tokens"]
    if max_new is None:
        max_new = max(0, settings.max_total_tokens - input_length)
    if input_length + max_new > settings.max_total_tokens:
        raise ValidationError(
            f"`inputs` tokens + `max_new_tokens` must be <= {settings.max_total_tokens}. "
            f"Given: {input_length} `inputs` tokens and {max_new} `max_new_tokens`"
        )
    if input_length > settings.max_input_tokens:
        raise ValidationError(f"`inputs` must have less than {settings.max_input_tokens} tokens. Given: {input_length}")
    _validate_grammar(p["grammar"])
    sampling = bool(
        p["do_sample"]
        or (p["temperature"] is not None and p["temperature"] != 1.0)
        or p["top_k"] is not None
        or p["top_p"] is not None
        or p["typical_p"] is not None
    )
    return ValidRequest(
        inputs=request.inputs,
        prompt=tuple(prompt),
        max_new_tokens=max_new,
        stop=tuple(p["stop"]),
        details=p["details"] or p["decoder_input_details"],
        decoder_input_details=p["decoder_input_details"],
        top_n_tokens=top_n,
        return_full_text=bool(p["return_full_text"]),
        seed=seed,
        sampling=sampling,
        best_of=best_of,
    )


def _validate_grammar(grammar: dict[str, Any] | None) -> None:
    if grammar is None or grammar["type"] == "regex":
        return
    schema = grammar["value"]
    if grammar["type"] == "json_schema":
        schema = schema.get("schema") if isinstance(schema, dict) else None
    if isinstance(schema, str):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as err:
            raise ValidationError(f"grammar is not valid: {err}") from err
    if not isinstance(schema, dict):
        raise ValidationError("grammar is not supported")
    if "properties" not in schema:
        raise ValidationError("grammar is not valid: Grammar must have a 'properties' field")
