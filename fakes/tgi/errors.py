"""TGI's error responses (§3): ``TGIError`` (JSON ``ErrorResponse``) and axum's plain-text ``Rejection``."""

from __future__ import annotations

import orjson


class TGIError(Exception):
    """An ``ErrorResponse`` (§3): HTTP status on /generate, a 200 SSE event on /generate_stream."""

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
    """An axum extractor rejection: a plain-text HTTP error outside TGI's ``ErrorResponse`` (§3)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
