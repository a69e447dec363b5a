"""Turn a raw request body into a validated request model, or an `InvalidRequest` naming the field.

FastAPI's own body handling would answer 422 `{"detail": [...]}`, which the OpenAI SDKs map to the wrong
class; we parse the bytes ourselves so every failure is a 400 in OpenAI's envelope with `param` and a
`code` like the ones OpenAI returns (`integer_below_min_value`, `empty_array`, ...).
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from server.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

# pydantic puts union members and validator names into `loc` ("str", "list[str]", "function-after[...]");
# they are not field names.
_NOT_A_FIELD = re.compile(r"^(str|int|float|bool|dict|list|none|literal|function|json)\b|[\[\-]")

_CODES = {
    "missing": "missing_required_parameter",
    "too_short": "empty_array",
    "too_long": "array_above_max_length",
    "extra_forbidden": "unknown_parameter",
}


def parse_request(body: bytes, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _to_invalid_request(_most_specific(exc.errors(include_url=False))) from None


def _most_specific(errors: list[ErrorDetails]) -> ErrorDetails:
    """The first error, unless it is one union member's type mismatch and another member of the same field
    broke a constraint: `stop` with 5 strings is "too long", not "not a string"."""
    first = errors[0]
    if not first["type"].endswith("_type"):
        return first
    param = field_path(first["loc"])
    return next((e for e in errors if not e["type"].endswith("_type") and field_path(e["loc"]) == param), first)


def _to_invalid_request(error: ErrorDetails) -> InvalidRequest:
    kind = error["type"]
    if kind == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
    param = field_path(error["loc"])
    if param is None:
        return InvalidRequest("The request body must be a JSON object.")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code=_CODES[kind])
    return InvalidRequest(f"Invalid '{param}': {_describe(error)}", param=param, code=_code(error))


def field_path(loc: tuple[int | str, ...]) -> str | None:
    """`messages[2].role` from pydantic's `loc`, without the union members pydantic puts in it."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not _NOT_A_FIELD.search(item):
            parts.append(item if not parts else f".{item}")
    return "".join(parts) or None


def _describe(error: ErrorDetails) -> str:
    context = error.get("ctx") or {}
    got = error.get("input")
    if error["type"] in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return f"{error['msg'].lower().replace('input should be', 'expected a value')}, but got {got} instead."
    if error["type"] == "too_short" and context.get("min_length") == 1:
        return "empty array. Expected an array with minimum length 1, but got an empty array instead."
    return f"{error['msg']}."


def _code(error: ErrorDetails) -> str | None:
    kind = error["type"]
    if kind in {"greater_than_equal", "greater_than"}:
        return "integer_below_min_value" if isinstance(error.get("input"), int) else "decimal_below_min_value"
    if kind in {"less_than_equal", "less_than"}:
        return "integer_above_max_value" if isinstance(error.get("input"), int) else "decimal_above_max_value"
    if kind == "too_short" and (error.get("ctx") or {}).get("min_length") != 1:
        return "array_below_min_length"
    return _CODES.get(kind, "invalid_type" if kind.endswith("_type") or "parsing" in kind else None)
