"""Request deserialization: axum's ``Json<GenerateRequest>`` extractor with serde-like type checks.

Body problems are axum rejections with ``text/plain`` bodies: 415 without a JSON content type, 400 for bad
JSON, 422 "Failed to deserialize the JSON body into the target type: …" for wrong types (the "line 1 column N"
position is the body length, exact only for "missing field" on one-line bodies).  Unknown fields are ignored
like TGI; ``parameters`` absent means TGI's ``default_parameters()`` (``do_sample`` true).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from fakes.tgi.errors import Rejection

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
