"""Every failure the proxy reports, as one hierarchy; `body()` is its one wire shape, rendered as an HTTP answer
in one place (`server.edge.errors.error_response`) and in-band by the stream formats.

    ProxyError                     500 server_error        (a bug: message carries no internals)
    ├── HTTPFailure                404/405/... from routing, status as given
    ├── InvalidRequest             400 invalid_request_error, `param` names the field
    │   └── ContextLengthExceeded  400 code context_length_exceeded
    ├── AuthenticationFailed       401 code invalid_api_key
    ├── HostNotAllowed             403 code host_not_allowed (DNS rebinding guard)
    ├── ModelNotFound              404 code model_not_found
    ├── RequestTooLarge            413
    └── UpstreamError              502 upstream answered something unusable or could not be reached
        ├── UpstreamOverloaded     429 with Retry-After
        ├── UpstreamLoading        503 with Retry-After
        ├── UpstreamTimeout        504
        ├── UpstreamFailed         500 the upstream failed while generating (x-should-retry: false)
        └── LocalModelUnavailable  503 kind `local` cannot run: its extra is not installed or its model failed

The wire shape is OpenAI's: `{"error": {"message", "type", "param", "code"}}` with all four keys,
https://github.com/openai/openai-openapi (ErrorResponse). Before the first byte of a stream an error is an
HTTP response; after it, the same object is sent as one `data:` event followed by `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "AuthenticationFailed",
    "ContextLengthExceeded",
    "HTTPFailure",
    "HostNotAllowed",
    "InvalidRequest",
    "LocalModelUnavailable",
    "ModelNotFound",
    "ProxyError",
    "RequestTooLarge",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamLoading",
    "UpstreamOverloaded",
    "UpstreamTimeout",
]


class ProxyError(Exception):
    """Base of every error the proxy renders; unexpected exceptions are shown as this, without details."""

    status: int = 500
    error_type: str = "server_error"
    default_code: str | None = None
    # Seconds the upstream itself asked callers to wait (Retry-After, HF's `estimated_time`); None when it
    # gave no figure. The proxy's retries wait at least this long before asking the same upstream again.
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class HTTPFailure(ProxyError):
    """A plain HTTP failure from the framework itself (unknown route, wrong method)."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code, headers=dict(headers or {}))
        self.status = status
        self.error_type = "invalid_request_error" if status < 500 else "server_error"


class InvalidRequest(ProxyError):
    """The request cannot be served as sent; `param` names the offending field."""

    status = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus requested tokens do not fit the model's context."""

    default_code = "context_length_exceeded"


class AuthenticationFailed(ProxyError):
    """No API key, or not one of `server.api_keys`."""

    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class HostNotAllowed(ProxyError):
    """The `Host` header names a host this server does not answer for (`server.allowed_hosts`)."""

    status = 403
    error_type = "invalid_request_error"
    default_code = "host_not_allowed"


class ModelNotFound(ProxyError):
    """No configured model or alias has this name."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class RequestTooLarge(ProxyError):
    """The request body is over the configured limit."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UpstreamError(ProxyError):
    """The upstream could not be reached or answered something the proxy cannot use."""

    status = 502
    default_code = "upstream_error"


class UpstreamOverloaded(UpstreamError):
    """The upstream refused for load (TGI `overloaded`, HTTP 429)."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamLoading(UpstreamError):
    """The upstream is starting or loading its model (HTTP 503)."""

    status = 503
    default_code = "model_loading"


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""

    status = 504
    default_code = "upstream_timeout"


class UpstreamFailed(UpstreamError):
    """The upstream failed during generation; retrying the same request will fail the same way."""

    status = 500
    default_code = "upstream_generation_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"x-should-retry": "false"})


class LocalModelUnavailable(UpstreamError):
    """The in-process model (kind `local`) cannot serve: retrying will not help until the operator acts."""

    status = 503
    default_code = "local_model_unavailable"

    def __init__(self, message: str) -> None:
        # The OpenAI SDKs retry a 503 unless told not to; a missing install does not fix itself.
        super().__init__(message, headers={"x-should-retry": "false"})
