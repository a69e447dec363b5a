"""Response bodies on the wire (§1-§2, TGI >= 2.1): stream events, ``GenerateResponse`` and error bodies.

Stream events carry ``index, token, top_tokens?, generated_text, details``; ``generated_text`` only on the
last event, ``details`` only with ``details: true``.  Legacy framing (TGI <= 2.0) drops ``index`` and
``input_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fakes.tgi.asgi import Headers
from fakes.tgi.model import Generation, _logprob
from fakes.tgi.validation import ValidRequest


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
    """``GenerateResponse`` (§2); ``generations[1:]`` become ``best_of_sequences``."""
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


JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
TEXT_HEADERS: Headers = [(b"content-type", b"text/plain; charset=utf-8")]


def default_fail_body(status: int, model_id: str) -> dict[str, Any]:
    """Body used when ``fail_status`` is set without ``fail_body`` (TGI §3 / HF router §5 shapes)."""
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
