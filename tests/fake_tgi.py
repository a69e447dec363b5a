"""A fake Hugging Face TGI upstream for tests and benchmarks, built from recorded fixtures.

``FakeTGI`` is a raw ASGI application (no framework, so that it controls every byte and sees client
disconnects) that speaks TGI's native API: ``POST /generate_stream``, ``POST /generate``, ``GET /info``,
``GET /health`` and ``POST /tokenize``.  Section numbers (§) refer to tgi-protocol.md, the project's TGI
protocol report; the recordings are in ``tests/fixtures/tgi`` (provenance in its ``SOURCES.md``).

Fidelity choices
----------------
* **Model.** Generation replays ``fake.script`` (token texts), then an EOS special token
  ``{"id":2,"text":"</s>","special":true}`` (``fake.eos_text``; ``None`` = never EOS, the script repeats
  and generation ends by length).  The default script is the token texts of the recorded TGI 3 stream
  ``hfjs_tape_generate_stream_llama32_3b_tgi3.sse``; where the script matches that recording position by
  position, the recorded token ids and logprobs are reused, so ``RECORDED_PROMPT`` with
  ``{"max_new_tokens":50,"return_full_text":true}`` reproduces the tape byte for byte.  Other tokens get a
  stable id per text (recorded id if the text was seen in the tape, else a CRC32-based id >= 2000) and a
  deterministic negative logprob derived from (position, text).
* **Tokenizer.** A prompt token is a maximal run of non-whitespace (``\\S+``); a non-empty
  whitespace-only prompt is one token.  ``/tokenize`` returns those pieces with character offsets
  (TGI slices the text with ``chars()``), and ``input_length``/``x-prompt-tokens`` use the same count.
* **Parameters** (§2.2, §7): ``parameters`` absent means TGI's ``default_parameters()`` (``do_sample``
  true); present means serde defaults (``do_sample``/``details`` false, ``stop`` []).  Stopping is checked
  per token in TGI's order: ``max_new_tokens`` reached -> ``length`` (so an EOS as the last allowed token
  reports ``length``), EOS -> ``eos_token``, then stop strings with TGI's regex ``re.escape(stop) + "$"``
  on the last 300 generated characters -> ``stop_sequence`` (stop text kept).  EOS is streamed, counted
  in ``generated_tokens`` and left out of ``generated_text``.  ``seed`` is reported only when sampling
  (``do_sample`` or a warper: temperature != 1, top_k, top_p < 1, typical_p < 1), a missing seed is drawn
  from a per-fake ``random.Random(0)``.  Without ``max_new_tokens`` TGI 3 allows
  ``max_total_tokens - input_length`` (§1.9).  ``truncate`` keeps the last N prompt tokens.
* **Validation** (§2.2, order of TGI's ``validate()``): messages are TGI's ``ValidationError`` texts,
  sent as HTTP 422 ``{"error":"Input validation error: …","error_type":"validation"}`` on ``/generate``
  and as HTTP 200 + one SSE event + EOF on ``/generate_stream`` (§2.6).  Body problems are axum
  rejections with ``text/plain`` bodies: 415 without a JSON content type, 400 for bad JSON, 422
  "Failed to deserialize the JSON body into the target type: …" for wrong types (the "line 1 column N"
  position is the body length, exact only for "missing field" on one-line bodies).  More than
  ``max_concurrent_requests`` generations in flight -> ``overloaded`` (429 / SSE event).
* **Wire format** (§2.3-§2.5, TGI >= 2.1): events ``data: {compact json}\\n\\n`` with keys
  ``index, token, top_tokens?, generated_text, details``; ``generated_text`` only on the last event;
  ``details`` only with ``details: true`` (``finish_reason, generated_tokens, seed, input_length``); no
  ``[DONE]``.  ``/generate`` returns ``{"generated_text", "details"?}`` with TGI's ``x-*`` headers.
  404/405 have empty bodies like axum.

Switches (plain attributes, see ``FakeTGISettings``): ``framing`` ("modern" | "legacy" = TGI <= 2.0:
``data:`` without space, no ``index``, no ``input_length``), ``line_ending``, ``keepalive_every``,
``token_delay`` (seconds before each token, so a real server streams incrementally and ``/generate``
takes as long), ``headers_delay``, ``fail_status``/``fail_body``/``fail_headers``, ``error_event_after``,
``eof_after``, ``replay_sse``, ``healthy``.

Recording: ``fake.requests`` (every request), ``fake.streams`` (one ``StreamRecord`` per
``/generate_stream`` or ``/generate`` request, ``record.stream`` tells which), ``fake.wait_for_disconnect``
(thread-safe) and ``await fake.await_disconnect``.  A receive-listener runs next to the token loop and the
fake stops generating as soon as the client disconnects, like TGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

FIXTURES_DIR = Path(__file__).parent / "fixtures" / "tgi"
RECORDED_STREAM_FIXTURE = "hfjs_tape_generate_stream_llama32_3b_tgi3.sse"
EOS_ID = 2
EOS_TEXT = "</s>"
STOP_WINDOW = 300  # TGI keeps the last 300 characters for stop-sequence matching (§7)


# --------------------------------------------------------------------------------------------------
# Fixtures and SSE helpers
# --------------------------------------------------------------------------------------------------


def load_fixture(name: str) -> bytes:
    """Bytes of a file in ``tests/fixtures/tgi`` (e.g. to feed ``fake.replay_sse``)."""
    return (FIXTURES_DIR / name).read_bytes()


def sse_data(body: bytes) -> list[str]:
    """Data payloads of an SSE body read like TGI clients do (§9): ``data:`` plus one optional space,
    comment lines ignored, ``\\n`` or ``\\r\\n`` line endings."""
    events: list[str] = []
    lines: list[str] = []
    for line in re.split(r"\r\n|\r|\n", body.decode()):
        if line == "":
            if lines:
                events.append("\n".join(lines))
                lines = []
        elif line.startswith("data:"):
            value = line[len("data:") :]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        events.append("\n".join(lines))
    return events


def split_sse_events(body: bytes) -> list[bytes]:
    """``body`` cut after each blank line (event boundary); the pieces concatenate back to ``body``."""
    return [part for part in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", body) if part]


def sse_json(body: bytes) -> list[dict[str, Any]]:
    """``sse_data`` decoded as JSON objects."""
    return [orjson.loads(data) for data in sse_data(body)]


@dataclass(frozen=True)
class Token:
    """TGI's ``Token`` (key order id, text, logprob, special)."""

    id: int
    text: str
    logprob: float
    special: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob, "special": self.special}


def _load_recording() -> tuple[tuple[Token, ...], str]:
    events = sse_json(load_fixture(RECORDED_STREAM_FIXTURE))
    tokens = tuple(Token(**event["token"]) for event in events)
    generated = "".join(token.text for token in tokens)
    full_text: str = events[-1]["generated_text"]
    assert full_text.endswith(generated), "recorded stream: final text must end with the token texts"
    return tokens, full_text[: len(full_text) - len(generated)]


RECORDED_TOKENS, RECORDED_PROMPT = _load_recording()
DEFAULT_SCRIPT: tuple[str, ...] = tuple(token.text for token in RECORDED_TOKENS)
_RECORDED_IDS: dict[str, int] = {token.text: token.id for token in RECORDED_TOKENS}
_ALTERNATIVES = (" the", ",", " and", ".", " a", " of", "\n", " to", " is", " in", " that", " it", "1", " -")


# --------------------------------------------------------------------------------------------------
# Deterministic tokenizer and "model"
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One prompt token: ``/tokenize`` item (character offsets)."""

    id: int
    text: str
    start: int
    stop: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "start": self.start, "stop": self.stop}


def token_id(text: str) -> int:
    """Stable id for a token text: the recorded id when the tape has it, else CRC32-based (>= 2000)."""
    recorded = _RECORDED_IDS.get(text)
    return recorded if recorded is not None else 2000 + zlib.crc32(text.encode()) % 120_000


def _logprob(position: int, text: str) -> float:
    return -round(0.05 + zlib.crc32(f"{position}\x00{text}".encode()) % 2950 / 1000, 4)


def tokenize(text: str) -> list[Piece]:
    """The fake tokenizer: maximal non-whitespace runs; whitespace-only text is one token; "" is none."""
    pieces = [Piece(token_id(m.group()), m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not pieces and text:
        pieces = [Piece(token_id(text), text, 0, len(text))]
    return pieces


def model_token(position: int, script: Sequence[str], eos_text: str | None) -> Token:
    """The token generated at 0-based ``position``: the script, then EOS (or the script again)."""
    if eos_text is not None and position >= len(script):
        return Token(EOS_ID, eos_text, _logprob(position, eos_text), special=True)
    if not script:
        raise ValueError("FakeTGI.script is empty and eos_text is None: nothing to generate")
    text = script[position % len(script)]
    if position < len(RECORDED_TOKENS) and RECORDED_TOKENS[position].text == text:
        return RECORDED_TOKENS[position]
    return Token(token_id(text), text, _logprob(position, text))


def top_tokens(chosen: Token, n: int) -> tuple[Token, ...]:
    """``n`` candidates for one step: the chosen token first, alternatives with lower logprobs."""
    alternatives = [text for text in _ALTERNATIVES if text != chosen.text][: max(0, n - 1)]
    others = (
        Token(token_id(text), text, round(chosen.logprob - 0.5 * rank, 4)) for rank, text in enumerate(alternatives, 1)
    )
    return (chosen, *others)[:n]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class TGIError(Exception):
    """An ``ErrorResponse`` (§2.6): HTTP status on /generate, a 200 SSE event on /generate_stream."""

    def __init__(self, status: int, error: str, error_type: str, outcome: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.error_type = error_type
        self.outcome = outcome

    def payload(self) -> bytes:
        return orjson.dumps({"error": self.error, "error_type": self.error_type})


class ValidationError(TGIError):
    def __init__(self, message: str) -> None:
        super().__init__(422, f"Input validation error: {message}", "validation", "validation_error")


def overloaded_error() -> TGIError:
    return TGIError(429, "Model is overloaded", "overloaded", "overloaded")


def generation_error() -> TGIError:
    return TGIError(424, "Request failed during generation: boom", "generation", "error_event")


def incomplete_generation_error() -> TGIError:
    return TGIError(500, "Incomplete generation", "incomplete_generation", "eof")


class Rejection(Exception):
    """An axum extractor rejection: a plain-text HTTP error outside TGI's ``ErrorResponse`` (§2.6)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------
# Request deserialization (serde-like type checks, axum rejections)
# --------------------------------------------------------------------------------------------------

_Kind = Literal["bool", "f32", "u32", "u64", "usize", "i32", "string", "strings", "grammar"]
# GenerateParameters field -> (serde type, accepts null).  Unknown fields are ignored like TGI.
_PARAMETERS: dict[str, tuple[_Kind, bool]] = {
    "best_of": ("usize", True),
    "temperature": ("f32", True),
    "repetition_penalty": ("f32", True),
    "frequency_penalty": ("f32", True),
    "top_k": ("i32", True),
    "top_p": ("f32", True),
    "typical_p": ("f32", True),
    "do_sample": ("bool", False),
    "max_new_tokens": ("u32", True),
    "return_full_text": ("bool", True),
    "stop": ("strings", False),
    "truncate": ("usize", True),
    "watermark": ("bool", False),
    "details": ("bool", False),
    "decoder_input_details": ("bool", False),
    "seed": ("u64", True),
    "top_n_tokens": ("u32", True),
    "grammar": ("grammar", True),
    "adapter_id": ("string", True),
}
_INT_RANGES = {"u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1), "usize": (0, 2**64 - 1), "i32": (-(2**31), 2**31 - 1)}
_EXPECTED = {"bool": "a boolean", "string": "a string", "strings": "a sequence", "grammar": "enum GrammarType"}
_GRAMMAR_TYPES = ("json", "json_object", "regex", "json_schema")


def _serde_unexpected(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f'string "{value}"'
    return "sequence" if isinstance(value, list) else "map"


def _type_error(kind: str, value: Any) -> str | None:
    """serde's complaint about ``value`` for a field of type ``kind``, or None if it deserializes."""
    expected = _EXPECTED.get(kind, kind)
    invalid_type = f"invalid type: {_serde_unexpected(value)}, expected {expected}"
    if kind == "bool":
        return None if isinstance(value, bool) else invalid_type
    if kind == "string":
        return None if isinstance(value, str) else invalid_type
    if kind == "f32":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else invalid_type
    if kind in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            return invalid_type
        low, high = _INT_RANGES[kind]
        return None if low <= value <= high else f"invalid value: integer `{value}`, expected {kind}"
    if kind == "grammar":
        if not isinstance(value, dict):
            return invalid_type
        if value.get("type") not in _GRAMMAR_TYPES:
            variants = ", ".join(f"`{name}`" for name in _GRAMMAR_TYPES)
            return f"unknown variant `{value.get('type')}`, expected one of {variants}"
        return None if "value" in value else "missing field `value`"
    raise AssertionError(kind)


def _default_parameters(present: bool) -> dict[str, Any]:
    """Serde defaults; TGI's ``default_parameters()`` (do_sample true) when ``parameters`` is absent."""
    params: dict[str, Any] = {name: None for name in _PARAMETERS}
    params.update(do_sample=not present, watermark=False, details=False, decoder_input_details=False, stop=[])
    return params


@dataclass(frozen=True)
class GenerateRequest:
    inputs: str
    parameters: dict[str, Any]  # every GenerateParameters field, defaults applied


def parse_generate_request(content_type: str | None, body: bytes) -> GenerateRequest:
    """axum's ``Json<GenerateRequest>`` extractor: 415 / 400 / 422 ``Rejection`` like TGI."""
    if not _is_json_content_type(content_type):
        raise Rejection(415, "Expected request with `Content-Type: application/json`")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Rejection(
            400, f"Failed to parse the request body as JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    where = f" at line 1 column {len(body.decode(errors='replace'))}"
    prefix = "Failed to deserialize the JSON body into the target type: "

    def reject(message: str) -> Rejection:
        return Rejection(422, prefix + message + where)

    if not isinstance(document, dict):
        raise reject(f"invalid type: {_serde_unexpected(document)}, expected struct GenerateRequest")
    if "inputs" not in document:
        raise reject("missing field `inputs`")
    if (problem := _type_error("string", document["inputs"])) is not None:
        raise reject(f"inputs: {problem}")
    raw = document.get("parameters", {})
    if not isinstance(raw, dict):
        raise reject(f"parameters: invalid type: {_serde_unexpected(raw)}, expected struct GenerateParameters")
    parameters = _default_parameters("parameters" in document)
    for name, (kind, nullable) in _PARAMETERS.items():
        if name not in raw or (raw[name] is None and nullable):
            continue
        value = raw[name]
        if kind == "strings" and isinstance(value, list):
            for i, item in enumerate(value):
                if (problem := _type_error("string", item)) is not None:
                    raise reject(f"parameters.{name}[{i}]: {problem}")
        elif (problem := _type_error(kind, value)) is not None:
            raise reject(f"parameters.{name}: {problem}")
        parameters[name] = value
    return GenerateRequest(inputs=document["inputs"], parameters=parameters)


def _is_json_content_type(value: str | None) -> bool:
    mime = (value or "").split(";")[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


# --------------------------------------------------------------------------------------------------
# Validation and generation
# --------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Generation:
    tokens: tuple[Token, ...]
    top_tokens: tuple[tuple[Token, ...], ...]  # empty unless top_n_tokens
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_text: str  # special tokens skipped; prompt prepended if return_full_text
    seed: int | None  # as reported in details


def run_model(settings: FakeTGISettings, request: ValidRequest, seed: int | None = None) -> Generation:
    """Generate with TGI's ``StoppingCriteria`` order: length, then EOS, then stop sequences (§7)."""
    stops = [re.compile(re.escape(stop) + "$") for stop in request.stop]
    tokens: list[Token] = []
    window = ""
    finish: Literal["length", "eos_token", "stop_sequence"] | None = None
    while finish is None:
        token = model_token(len(tokens), settings.script, settings.eos_text)
        tokens.append(token)
        if len(tokens) >= request.max_new_tokens:
            finish = "length"
        elif token.special:
            finish = "eos_token"
        elif stops:
            window = (window + token.text)[-STOP_WINDOW:]
            if any(stop.search(window) for stop in stops):
                finish = "stop_sequence"
    text = "".join(token.text for token in tokens if not token.special)
    tops = tuple(top_tokens(token, request.top_n_tokens) for token in tokens) if request.top_n_tokens else ()
    return Generation(
        tokens=tuple(tokens),
        top_tokens=tops,
        finish_reason=finish,
        generated_text=(request.inputs + text) if request.return_full_text else text,
        seed=(request.seed if seed is None else seed) if request.sampling else None,
    )


# --------------------------------------------------------------------------------------------------
# Response bodies
# --------------------------------------------------------------------------------------------------


def stream_event(request: ValidRequest, generation: Generation, position: int, *, legacy: bool) -> dict[str, Any]:
    """``StreamResponse`` for token ``position`` (0-based); the last one carries text and details."""
    last = position == len(generation.tokens) - 1
    event: dict[str, Any] = {} if legacy else {"index": position + 1}
    event["token"] = generation.tokens[position].to_json()
    if generation.top_tokens:
        event["top_tokens"] = [token.to_json() for token in generation.top_tokens[position]]
    event["generated_text"] = generation.generated_text if last else None
    details: dict[str, Any] | None = None
    if last and request.details:
        details = {
            "finish_reason": generation.finish_reason,
            "generated_tokens": len(generation.tokens),
            "seed": generation.seed,
        }
        if not legacy:
            details["input_length"] = request.input_length
    event["details"] = details
    return event


def _sequence_details(request: ValidRequest, generation: Generation) -> dict[str, Any]:
    prefill: list[dict[str, Any]] = []
    if request.decoder_input_details:
        prefill = [
            {"id": piece.id, "text": piece.text, "logprob": None if i == 0 else _logprob(-1 - i, piece.text)}
            for i, piece in enumerate(request.prompt)
        ]
    return {
        "finish_reason": generation.finish_reason,
        "generated_tokens": len(generation.tokens),
        "seed": generation.seed,
        "prefill": prefill,
        "tokens": [token.to_json() for token in generation.tokens],
    }


def generate_response(request: ValidRequest, generations: Sequence[Generation]) -> dict[str, Any]:
    """``GenerateResponse`` (§2.3); ``generations[1:]`` become ``best_of_sequences``."""
    best = generations[0]
    response: dict[str, Any] = {"generated_text": best.generated_text}
    if request.details:
        details = _sequence_details(request, best)
        if len(generations) > 1:
            details["best_of_sequences"] = [
                {"generated_text": other.generated_text, **_sequence_details(request, other)}
                | ({"top_tokens": _top_json(other)} if other.top_tokens else {})
                for other in generations[1:]
            ]
        if best.top_tokens:
            details["top_tokens"] = _top_json(best)
        response["details"] = details
    return response


def _top_json(generation: Generation) -> list[list[dict[str, Any]]]:
    return [[token.to_json() for token in step] for step in generation.top_tokens]


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body; None if absent or not JSON
    raw_body: bytes
    received_at: float  # time.monotonic()


@dataclass(eq=False)
class StreamRecord:
    """What happened to one ``/generate_stream`` (``stream``) or ``/generate`` request.

    ``outcome``: running | complete | disconnected | validation_error | overloaded | error_event | eof |
    failed (fail_status) | rejected (415/400/422 plain text) | replayed.
    """

    path: str
    stream: bool
    request: RecordedRequest = field(repr=False)
    started_at: float
    finished_at: float | None = None
    disconnected_at: float | None = None
    events_sent: int = 0  # SSE data events written (tokens, final, error); keep-alive comments excluded
    tokens_generated: int = 0  # tokens "computed" so far (stream: token events sent)
    outcome: str = "running"
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def disconnected(self) -> bool:
        return self.disconnected_at is not None

    def wait_finished(self, timeout: float) -> bool:
        """Block (any thread) until the handler returned."""
        return self._done.wait(timeout)

    def _finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.finished_at = time.monotonic()
        self._done.set()


# --------------------------------------------------------------------------------------------------
# ASGI plumbing
# --------------------------------------------------------------------------------------------------

DISCONNECTED = "disconnected"


class _Exchange:
    """One HTTP exchange after its body was read: sends, sleeps, and listens for ``http.disconnect``."""

    def __init__(self, receive: Receive, send: Send, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._send = send
        self._on_disconnect = on_disconnect
        self.gone = asyncio.Event()
        self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._mark_gone()

    def _mark_gone(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            self._on_disconnect()

    async def stop_listening(self) -> None:
        """Must precede the final body message: servers report ``http.disconnect`` once it is sent."""
        self._listener.cancel()
        await asyncio.wait([self._listener])

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; False as soon as the client disconnects."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return not self.gone.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self.gone.wait()
        except TimeoutError:
            return True
        return False

    async def _emit(self, message: Message) -> bool:
        if self.gone.is_set():
            return False
        try:
            await self._send(message)
        except OSError:  # some servers raise on writes to a closed connection
            self._mark_gone()
        return not self.gone.is_set()

    async def start(self, status: int, headers: Headers) -> bool:
        return await self._emit({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> bool:
        return await self._emit({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self, chunk: bytes = b"") -> bool:
        await self.stop_listening()
        return await self._emit({"type": "http.response.body", "body": chunk, "more_body": False})

    async def respond(self, status: int, body: bytes, headers: Headers) -> bool:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        return await self.start(status, headers) and await self.finish(body)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_simple(send: Send, status: int, body: bytes = b"", headers: Headers | None = None) -> None:
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
TEXT_HEADERS: Headers = [(b"content-type", b"text/plain; charset=utf-8")]
_ROUTES: dict[str, str] = {
    "/generate_stream": "POST",
    "/generate": "POST",
    "/tokenize": "POST",
    "/info": "GET",
    "/health": "GET",
}


def default_fail_body(status: int, model_id: str) -> dict[str, Any]:
    """Body used when ``fail_status`` is set without ``fail_body`` (TGI §2.6 / HF router §5 shapes)."""
    known: dict[int, dict[str, Any]] = {
        422: {"error": "Input validation error: injected", "error_type": "validation"},
        424: {"error": "Request failed during generation: boom", "error_type": "generation"},
        429: {"error": "Model is overloaded", "error_type": "overloaded"},
        500: {"error": "Incomplete generation", "error_type": "incomplete_generation"},
        503: {"error": f"Model {model_id} is currently loading", "estimated_time": 20.0},
    }
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    return known.get(status, {"error": phrase, "error_type": "unknown"})


# --------------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeTGISettings:
    """Every knob of the fake; all are plain attributes that tests may change at any time."""

    # model
    script: list[str] = field(default_factory=lambda: list(DEFAULT_SCRIPT))
    eos_text: str | None = EOS_TEXT
    # /info limits (router defaults, §2.2)
    model_id: str = "fake/model"
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_best_of: int = 2
    max_concurrent_requests: int = 128
    max_client_batch_size: int = 4
    validation_workers: int = 2
    version: str = "3.3.6"
    healthy: bool = True  # False: /health answers 503 {"error":"unhealthy","error_type":"healthcheck"}
    # framing of /generate_stream
    framing: Literal["modern", "legacy"] = "modern"  # legacy = TGI <= 2.0: `data:` no space, no index
    line_ending: Literal["\n", "\r\n"] = "\n"
    keepalive_every: int = 0  # emit a `:` comment before every Nth data event (0 = never)
    # timing
    token_delay: float = 0.0  # seconds before each token (stream event / non-stream generation step)
    headers_delay: float = 0.0  # seconds before /generate* answers start
    # fault injection (/generate and /generate_stream)
    fail_status: int | None = None  # answer with this status and fail_body instead of generating
    fail_body: dict[str, Any] | bytes | None = None  # None: default_fail_body(fail_status)
    fail_headers: dict[str, str] = field(default_factory=dict)  # e.g. {"retry-after": "1"}
    error_event_after: int | None = None  # stream: N token events then a generation error event; /generate: 424
    eof_after: int | None = None  # stream: N token events then end of body; /generate: 500 incomplete
    replay_sse: bytes | None = None  # serve these exact bytes as every /generate_stream body


@dataclass(eq=False, repr=False)
class FakeTGI(FakeTGISettings):
    """The fake upstream.  ``FakeTGI(token_delay=0.1)``; ``fake.app`` (or ``fake``) is the ASGI app."""

    requests: list[RecordedRequest] = field(default_factory=list, init=False)
    streams: list[StreamRecord] = field(default_factory=list, init=False)
    _disconnect_seen: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _in_flight: int = field(default=0, init=False, repr=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), init=False, repr=False)

    # -- public helpers -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"FakeTGI(model_id={self.model_id!r}, requests={len(self.requests)}, "
            f"streams={[record.outcome for record in self.streams]}, in_flight={self._in_flight})"
        )

    @property
    def app(self) -> ASGIApp:
        return self  # the instance itself, so servers detect an ASGI 3 app via its async __call__

    @property
    def in_flight(self) -> int:
        """Generations currently admitted (counted against ``max_concurrent_requests``)."""
        return self._in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def wait_for_disconnect(self, timeout: float) -> bool:
        """Block (any thread) until some client disconnected during a generation."""
        return self._disconnect_seen.wait(timeout)

    async def await_disconnect(self, timeout: float) -> bool:
        """``wait_for_disconnect`` for async tests (waits in a worker thread)."""
        return await asyncio.to_thread(self._disconnect_seen.wait, timeout)

    def reset(self) -> None:
        """Forget recorded requests, streams and disconnects (settings are kept)."""
        self.requests.clear()
        self.streams.clear()
        self._disconnect_seen.clear()

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "max_stop_sequences": self.max_stop_sequences,
            "max_top_n_tokens": self.max_top_n_tokens,
            "max_best_of": self.max_best_of,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_client_batch_size": self.max_client_batch_size,
            "validation_workers": self.validation_workers,
            "router": "text-generation-router",
            "version": self.version,
        }

    # -- ASGI entry point ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        body = await _read_body(receive)
        if body is None:
            return
        request = self._record(scope, body)
        allowed = _ROUTES.get(path)
        if allowed is None:
            await _send_simple(send, 404)
        elif method != allowed:
            await _send_simple(send, 405, headers=[(b"allow", allowed.encode())])
        elif path in ("/generate_stream", "/generate"):
            await self._serve_generation(request, receive, send, stream=path == "/generate_stream")
        elif path == "/tokenize":
            await self._serve_tokenize(request, send)
        elif path == "/info":
            await _send_simple(send, 200, orjson.dumps(self.info()), JSON_HEADERS)
        elif self.healthy:
            await _send_simple(send, 200)
        else:
            body = orjson.dumps({"error": "unhealthy", "error_type": "healthcheck"})
            await _send_simple(send, 503, body, JSON_HEADERS)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _record(self, scope: Scope, body: bytes) -> RecordedRequest:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        request = RecordedRequest(scope["method"], scope["path"], headers, parsed, body, time.monotonic())
        self.requests.append(request)
        return request

    async def _serve_tokenize(self, request: RecordedRequest, send: Send) -> None:
        try:
            parsed = parse_generate_request(request.headers.get("content-type"), request.raw_body)
        except Rejection as err:
            await _send_simple(send, err.status, err.message.encode(), TEXT_HEADERS)
            return
        pieces = [piece.to_json() for piece in tokenize(parsed.inputs)]
        await _send_simple(send, 200, orjson.dumps(pieces), JSON_HEADERS)

    # -- generation endpoints -----------------------------------------------------------------------

    async def _serve_generation(self, request: RecordedRequest, receive: Receive, send: Send, *, stream: bool) -> None:
        record = StreamRecord(request.path, stream, request, started_at=time.monotonic())
        self.streams.append(record)

        def on_disconnect() -> None:
            record.disconnected_at = time.monotonic()
            self._disconnect_seen.set()

        exchange = _Exchange(receive, send, on_disconnect)
        outcome = "crashed"
        try:
            outcome = await self._generation_outcome(exchange, request, record, stream=stream)
        finally:
            await exchange.stop_listening()
            record._finish(DISCONNECTED if record.disconnected else outcome)

    async def _generation_outcome(
        self, exchange: _Exchange, request: RecordedRequest, record: StreamRecord, *, stream: bool
    ) -> str:
        if not await exchange.pause(self.headers_delay):
            return DISCONNECTED
        if self.fail_status is not None:
            await self._send_failure(exchange, self.fail_status)
            return "failed"
        if stream and self.replay_sse is not None:
            return await self._replay(exchange, record, self.replay_sse)
        try:
            parsed = parse_generate_request(request.headers.get("content-type"), request.raw_body)
        except Rejection as err:
            await exchange.respond(err.status, err.message.encode(), TEXT_HEADERS)
            return "rejected"
        if stream:
            return await self._stream(exchange, parsed, record)
        return await self._generate(exchange, parsed, record)

    @contextlib.contextmanager
    def _admitted(self, request: GenerateRequest, *, stream: bool) -> Iterator[ValidRequest]:
        """Endpoint checks, then a concurrency permit (overloaded), then validation - TGI's order."""
        check_endpoint_rules(self, request.parameters, stream=stream)
        with self._lock:
            if self._in_flight >= self.max_concurrent_requests:
                raise overloaded_error()
            self._in_flight += 1
        try:
            yield validate(self, request, self._rng)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _stream(self, exchange: _Exchange, request: GenerateRequest, record: StreamRecord) -> str:
        if not await exchange.start(200, self._stream_headers(request.inputs)):
            return DISCONNECTED
        try:
            with self._admitted(request, stream=True) as valid:
                generation = run_model(self, valid)
                for position in range(len(generation.tokens)):
                    if not await exchange.pause(self.token_delay):
                        return DISCONNECTED
                    if self.error_event_after is not None and position >= self.error_event_after:
                        raise generation_error()
                    if self.eof_after is not None and position >= self.eof_after:
                        await exchange.finish()
                        return "eof"
                    event = stream_event(valid, generation, position, legacy=self.framing == "legacy")
                    if not await self._send_event(exchange, record, orjson.dumps(event)):
                        return DISCONNECTED
                    record.tokens_generated += 1
        except TGIError as err:
            await self._send_event(exchange, record, err.payload())
            await exchange.finish()
            return err.outcome
        await exchange.finish()
        return "complete"

    async def _generate(self, exchange: _Exchange, request: GenerateRequest, record: StreamRecord) -> str:
        started = time.monotonic()
        try:
            with self._admitted(request, stream=False) as valid:
                seeds = [valid.seed] + [self._rng.getrandbits(64) for _ in range(valid.best_of - 1)]
                generations = [run_model(self, valid, seed) for seed in seeds]
                for position in range(len(generations[0].tokens)):
                    if not await exchange.pause(self.token_delay):
                        return DISCONNECTED
                    if self.error_event_after is not None and position >= self.error_event_after:
                        raise generation_error()
                    if self.eof_after is not None and position >= self.eof_after:
                        raise incomplete_generation_error()
                    record.tokens_generated += 1
        except TGIError as err:
            await exchange.respond(err.status, err.payload(), JSON_HEADERS)
            return err.outcome
        body = orjson.dumps(generate_response(valid, generations))
        headers = self._generate_headers(valid, generations[0], time.monotonic() - started)
        return "complete" if await exchange.respond(200, body, headers) else DISCONNECTED

    async def _replay(self, exchange: _Exchange, record: StreamRecord, body: bytes) -> str:
        if not await exchange.start(200, self._stream_headers("")):
            return DISCONNECTED
        for chunk in split_sse_events(body):
            if not await exchange.pause(self.token_delay) or not await exchange.write(chunk):
                return DISCONNECTED
            record.events_sent += 1
        await exchange.finish()
        return "replayed"

    async def _send_event(self, exchange: _Exchange, record: StreamRecord, payload: bytes) -> bool:
        eol = self.line_ending.encode()
        chunk = (b"data:" if self.framing == "legacy" else b"data: ") + payload + eol + eol
        if self.keepalive_every > 0 and (record.events_sent + 1) % self.keepalive_every == 0:
            chunk = b":" + eol + eol + chunk
        if not await exchange.write(chunk):
            return False
        record.events_sent += 1
        return True

    async def _send_failure(self, exchange: _Exchange, status: int) -> None:
        body = self.fail_body if self.fail_body is not None else default_fail_body(status, self.model_id)
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        extra = [(name.lower().encode(), value.encode()) for name, value in self.fail_headers.items()]
        headers = extra if any(name == b"content-type" for name, _ in extra) else [*JSON_HEADERS, *extra]
        await exchange.respond(status, payload, headers)

    @staticmethod
    def _stream_headers(inputs: str) -> Headers:
        return [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-compute-type", b"gpu+optimized"),
            (b"x-compute-characters", str(len(inputs)).encode()),
        ]

    @staticmethod
    def _generate_headers(request: ValidRequest, generation: Generation, elapsed: float) -> Headers:
        total_ms = int(elapsed * 1000)
        per_token_ms = total_ms // max(1, len(generation.tokens))
        values = {
            "content-type": "application/json",
            "x-compute-type": "gpu+optimized",
            "x-compute-time": f"{elapsed:.9f}",
            "x-compute-characters": str(len(request.inputs)),
            "x-total-time": str(total_ms),
            "x-validation-time": "0",
            "x-queue-time": "0",
            "x-inference-time": str(total_ms),
            "x-time-per-token": str(per_token_ms),
            "x-prompt-tokens": str(request.input_length),
            "x-generated-tokens": str(len(generation.tokens)),
        }
        return [(name.encode(), value.encode()) for name, value in values.items()]
