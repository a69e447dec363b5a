"""Map what TGI reports (HTTP status, `{"error", "error_type"}` bodies, in-stream error events, transport
failures) onto the proxy's error hierarchy. TGI's side: docs/tgi-wire.md §3; OpenAI's side: the hierarchy in
`server/errors.py`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import orjson

from server.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProxyError,
    RequestTooLarge,
    UpstreamError,
    UpstreamFailed,
    UpstreamLoading,
    UpstreamOverloaded,
    UpstreamTimeout,
)

# TGI names the failing parameter in backticks: "Input validation error: `top_p` must be > 0.0 and < 1.0".
_BACKTICKED = re.compile(r"`([a-z_]+)`")
_CONTEXT_MARKERS = ("`inputs` tokens + `max_new_tokens`", "`inputs` must have less than")


def error_from_upstream(status: int | None, body: Any, retry_after: str | None = None) -> ProxyError:
    """The proxy's error for an upstream's failure answer, TGI's `{"error", "error_type"}` or an OpenAI-style
    `{"error": {...}}` alike. `status` is None for an error event inside a 200 stream; `retry_after` is the
    Retry-After header."""
    error = _mapped(status, body)
    wait = _wait_hint(body, retry_after)
    if isinstance(error, UpstreamOverloaded | UpstreamLoading):
        error.retry_after = wait
        if wait is not None:
            error.headers["retry-after"] = str(math.ceil(wait))
    return error


def _mapped(status: int | None, body: Any) -> ProxyError:
    message, error_type = _message_and_type(body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        status = body["error"].get("http_status_code", status)
    if error_type == "validation" or status in (400, 422):
        return _validation_error(message)
    if error_type == "overloaded" or status == 429:
        return UpstreamOverloaded(message, headers={"retry-after": "1"})
    if error_type in {"generation", "incomplete_generation", "incomplete_generation_stream"} or status in (
        424,
        500,
    ):
        return UpstreamFailed(message, code=f"upstream_{error_type or 'generation'}_error")
    if status == 503:
        return UpstreamLoading(message, headers={"retry-after": "5"})
    if status == 402:
        # The HF router's "credits exhausted": OpenAI reports the same condition as 429 `insufficient_quota`.
        return UpstreamOverloaded(f"The upstream refused for billing (HTTP 402): {message}", code="insufficient_quota")
    if status == 413:
        return RequestTooLarge(f"the upstream refused the request as too large: {message}")
    if status in (401, 403):
        return UpstreamError(f"the upstream refused the proxy's credentials (HTTP {status})", code="upstream_auth")
    if status == 504:
        return UpstreamTimeout(message)
    return UpstreamError(f"the upstream answered HTTP {status}: {message}" if status else message)


def _wait_hint(body: Any, retry_after: str | None) -> float | None:
    """Retry-After in its seconds form, else the HF router's `{"error": "... is currently loading",
    "estimated_time": 44.5}` for a cold model (docs/tgi-wire.md §5). The HTTP-date form is not used by TGI."""
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None
    estimated = body.get("estimated_time") if isinstance(body, dict) else None
    if isinstance(estimated, int | float) and not isinstance(estimated, bool) and estimated > 0:
        return float(estimated)
    return None


def from_transport_error(exc: httpx.HTTPError) -> ProxyError:
    """Clients are not told the upstream's address (it is internal, and may carry credentials)."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The upstream did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError("The upstream cannot be reached.", code="upstream_unreachable")
    return UpstreamError(f"The connection to the upstream failed ({type(exc).__name__}).", code="upstream_connection")


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """`data` parsed as a JSON object, else an `UpstreamError` saying that `what` was not one."""
    try:
        value: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"the upstream sent {what} that is not JSON") from None
    if not isinstance(value, dict):
        raise UpstreamError(f"the upstream sent {what} that is not a JSON object")
    return value


def _message_and_type(body: Any) -> tuple[str, str | None]:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # TGI Messages API in-stream shape {"error": {"message", ...}}
            return str(error.get("message") or "upstream error"), None
        if error is not None:
            error_type = body.get("error_type")
            return str(error), str(error_type) if error_type is not None else None
    if isinstance(body, str | bytes) and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text[:500], None
    return "the upstream gave no reason", None


def _validation_error(message: str) -> InvalidRequest:
    if any(marker in message for marker in _CONTEXT_MARKERS):
        return ContextLengthExceeded(message, param="inputs")
    match = _BACKTICKED.search(message)
    return InvalidRequest(message, param=match.group(1) if match else None, code="upstream_validation_error")
