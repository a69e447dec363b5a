"""A fake Hugging Face TGI upstream for tests and benchmarks, built from recorded fixtures.

``FakeTGI`` is a raw ASGI application (no framework, so that it controls every byte and sees client
disconnects) that speaks TGI's native API: ``POST /generate_stream``, ``POST /generate``, ``GET /info``,
``GET /health`` and ``POST /tokenize``.  Section numbers (§) refer to docs/tgi-wire.md, this repository's
notes on TGI's wire protocol; the recordings are in ``tests/fixtures/tgi`` (provenance in its ``SOURCES.md``).

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
* **Parameters** (§7, §8): ``parameters`` absent means TGI's ``default_parameters()`` (``do_sample``
  true); present means serde defaults (``do_sample``/``details`` false, ``stop`` []).  Stopping is checked
  per token in TGI's order: ``max_new_tokens`` reached -> ``length`` (so an EOS as the last allowed token
  reports ``length``), EOS -> ``eos_token``, then stop strings with TGI's regex ``re.escape(stop) + "$"``
  on the last 300 generated characters -> ``stop_sequence`` (stop text kept).  EOS is streamed, counted
  in ``generated_tokens`` and left out of ``generated_text``.  ``seed`` is reported only when sampling
  (``do_sample`` or a warper: temperature != 1, top_k, top_p < 1, typical_p < 1), a missing seed is drawn
  from a per-fake ``random.Random(0)``.  Without ``max_new_tokens`` TGI 3 allows
  ``max_total_tokens - input_length`` (§7).  ``truncate`` keeps the last N prompt tokens.
* **Validation** (§7, order of TGI's ``validate()``): messages are TGI's ``ValidationError`` texts,
  sent as HTTP 422 ``{"error":"Input validation error: …","error_type":"validation"}`` on ``/generate``
  and as HTTP 200 + one SSE event + EOF on ``/generate_stream`` (§3).  Body problems are axum
  rejections with ``text/plain`` bodies: 415 without a JSON content type, 400 for bad JSON, 422
  "Failed to deserialize the JSON body into the target type: …" for wrong types (the "line 1 column N"
  position is the body length, exact only for "missing field" on one-line bodies).  More than
  ``max_concurrent_requests`` generations in flight -> ``overloaded`` (429 / SSE event).
* **Wire format** (§1-§2, TGI >= 2.1): events ``data: {compact json}\\n\\n`` with keys
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

Modules: ``fixtures`` (recordings, SSE helpers), ``model`` (tokenizer, tokens, ``run_model``), ``errors``
(``TGIError``, ``Rejection``), ``request`` (body deserialization), ``validation`` (TGI's ``validate()``),
``wire`` (response bodies), ``records`` (what the fake saw), ``asgi`` (plumbing), ``settings``
(``FakeTGISettings``) and ``app`` (``FakeTGI``); every public name is re-exported here.
"""

from __future__ import annotations

from fakes.tgi.app import FakeTGI
from fakes.tgi.asgi import DISCONNECTED, ASGIApp, Headers, Message, Receive, Scope, Send, read_body
from fakes.tgi.errors import (
    Rejection,
    TGIError,
    ValidationError,
    generation_error,
    incomplete_generation_error,
    overloaded_error,
)
from fakes.tgi.fixtures import (
    FIXTURES_DIR,
    RECORDED_STREAM_FIXTURE,
    load_fixture,
    split_sse_events,
    sse_data,
    sse_json,
)
from fakes.tgi.model import (
    DEFAULT_SCRIPT,
    EOS_ID,
    EOS_TEXT,
    RECORDED_PROMPT,
    RECORDED_TOKENS,
    STOP_WINDOW,
    Generation,
    Piece,
    Token,
    model_token,
    run_model,
    token_id,
    tokenize,
    top_tokens,
)
from fakes.tgi.records import RecordedRequest, StreamRecord
from fakes.tgi.request import GenerateRequest, parse_generate_request
from fakes.tgi.settings import FakeTGISettings
from fakes.tgi.validation import ValidRequest, check_endpoint_rules, validate
from fakes.tgi.wire import JSON_HEADERS, TEXT_HEADERS, default_fail_body, generate_response, stream_event

__all__ = [
    "read_body",
    "ASGIApp",
    "DEFAULT_SCRIPT",
    "DISCONNECTED",
    "EOS_ID",
    "EOS_TEXT",
    "FIXTURES_DIR",
    "FakeTGI",
    "FakeTGISettings",
    "GenerateRequest",
    "Generation",
    "Headers",
    "JSON_HEADERS",
    "Message",
    "Piece",
    "RECORDED_PROMPT",
    "RECORDED_STREAM_FIXTURE",
    "RECORDED_TOKENS",
    "Receive",
    "RecordedRequest",
    "Rejection",
    "STOP_WINDOW",
    "Scope",
    "Send",
    "StreamRecord",
    "TEXT_HEADERS",
    "TGIError",
    "Token",
    "ValidRequest",
    "ValidationError",
    "check_endpoint_rules",
    "default_fail_body",
    "generate_response",
    "generation_error",
    "incomplete_generation_error",
    "load_fixture",
    "model_token",
    "overloaded_error",
    "parse_generate_request",
    "run_model",
    "split_sse_events",
    "sse_data",
    "sse_json",
    "stream_event",
    "token_id",
    "tokenize",
    "top_tokens",
    "validate",
]
