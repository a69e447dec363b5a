"""OpenAI request -> TGI `parameters`: pure functions, no I/O.

Decisions (the README's parameter table lists each field; TGI's parameters are `GenerateParameters` in TGI's
`router/src/lib.rs`, OpenAI's are openai-openapi's `CreateChatCompletionRequest` / `CreateCompletionRequest`):
- `details: true` and an explicit `do_sample` always; `return_full_text: false` so the answer never depends
  on the model's pipeline tag.
- `temperature == 0` or `top_p == 0` is greedy: `do_sample: false` and no warper at all (temperature, top_p,
  top_k, typical_p), because TGI keeps sampling while any warper is set (`sampling = do_sample or has_warpers`,
  `NextTokenChooser` in TGI's `server/text_generation_server/utils/tokens.py`).
- `top_p >= 1` is OpenAI's "off" and TGI rejects it, so it is left out.
- Values TGI cannot honour are refused by name rather than silently dropped; neutral values pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from server.errors import InvalidRequest
from server.generation.plan import Plan, as_u64
from server.upstream.base import Limits
from server.upstream.tgi_wire import GenerateParameters

__all__ = [
    "chat_plan",
    "completion_plan",
    "prompts_of",
    "refuse_unhonoured",
    "stop_list",
    "wants_usage",
    "with_defaults",
]

RequestT = TypeVar("RequestT", bound=SamplingFields)

_PASSTHROUGH = ("repetition_penalty", "truncate", "watermark", "adapter_id")
_WARPERS = ("top_k", "typical_p")


def with_defaults(request: RequestT, defaults: dict[str, Any]) -> RequestT:
    """Fill fields the client left out from the model's configured `defaults`."""
    missing = {key: value for key, value in defaults.items() if getattr(request, key, None) is None}
    return request.model_copy(update=missing) if missing else request


def stop_list(request_stop: str | Sequence[str] | None, *extra: Sequence[str]) -> tuple[str, ...]:
    stops = [request_stop] if isinstance(request_stop, str) else list(request_stop or ())
    for more in extra:
        stops.extend(more)
    return tuple(dict.fromkeys(stop for stop in stops if stop))


# Chat fields that change the answer and that no translated upstream (tgi, hf-inference, local) can honour yet:
# refused by name, never accepted and ignored. Neutral values (absent, null, text-only modalities) pass.
# The names are openai-openapi's CreateChatCompletionRequest; the `openai` kind passes them all on.
_UNHONOURED_CHAT_FIELDS = {
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "reasoning_effort": "`reasoning_effort` (it has no reasoning-effort control)",
    "verbosity": "`verbosity`",
    "web_search_options": "web search",
}


def refuse_unhonoured(request: ChatCompletionRequest, kind: str) -> None:
    """400 naming the first field this model would have to ignore: tools (until the proxy parses calls out of
    the output; `tool_choice: "none"` is honoured by not offering them), and the fields above."""
    extra = request.model_extra or {}
    cannot = f"Models of kind `{kind}` cannot call tools through this proxy yet"
    if request.tool_choice is not None and request.tool_choice != "none":
        raise InvalidRequest(f'{cannot}; `tool_choice` may only be "none".', param="tool_choice")
    if extra.get("function_call") not in (None, "none"):
        raise InvalidRequest(f'{cannot}; `function_call` may only be "none".', param="function_call")
    if request.tools and request.tool_choice != "none":
        raise InvalidRequest(f'{cannot}: send no `tools`, or `tool_choice: "none"`.', param="tools")
    if extra.get("functions") and extra.get("function_call") != "none":
        raise InvalidRequest(f'{cannot}: send no `functions`, or `function_call: "none"`.', param="functions")
    for name, what in _UNHONOURED_CHAT_FIELDS.items():
        value = extra.get(name)
        if value is not None and not (name == "modalities" and value in ([], ["text"])):
            raise InvalidRequest(f"Models of kind `{kind}` do not support {what}.", param=name)


def chat_plan(
    request: ChatCompletionRequest, limits: Limits, *, max_new_tokens: int | None, stops: tuple[str, ...]
) -> Plan:
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequest("`top_logprobs` requires `logprobs` to be true.", param="top_logprobs")
    top = _within_cap((request.top_logprobs or 0) if request.logprobs else None, limits, "top_logprobs")
    parameters = _sampling(request, limits, max_new_tokens, stops, top or 0)
    _add_response_format(parameters, request)
    return _plan(request, parameters, stops, top)


def completion_plan(request: CompletionRequest, limits: Limits, *, max_new_tokens: int, stops: tuple[str, ...]) -> Plan:
    if request.suffix:
        raise InvalidRequest("`suffix` is not supported by this model.", param="suffix")
    top = _within_cap(request.logprobs, limits, "logprobs")
    parameters = _sampling(request, limits, max_new_tokens, stops, top or 0)
    if request.echo and top is not None and not request.stream:
        # The prompt's own logprobs come from TGI's prefill details, which it refuses to stream.
        parameters["decoder_input_details"] = True
    if request.best_of is not None and request.best_of > 1:
        if request.stream:
            raise InvalidRequest("`best_of` cannot be used with `stream`.", param="best_of")
        if request.best_of > limits.max_best_of:
            raise InvalidRequest(f"`best_of` must be at most {limits.max_best_of}.", param="best_of")
        if request.best_of < (request.n or 1):
            raise InvalidRequest("`best_of` must be greater than or equal to `n`.", param="best_of")
        parameters["best_of"] = request.best_of
    _add_response_format(parameters, request)
    return _plan(request, parameters, stops, top)


def prompts_of(request: CompletionRequest) -> list[str]:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise InvalidRequest("`prompt` must not be an empty array.", param="prompt", code="empty_array")
    if all(isinstance(item, str) for item in prompt):
        return [item for item in prompt if isinstance(item, str)]
    raise InvalidRequest(
        "Prompts given as token ids are not supported: send the prompt as a string or a list of strings.",
        param="prompt",
    )


def wants_usage(request: SamplingFields) -> bool:
    """The client asked for the usage chunk at the end of its stream (`stream_options.include_usage`)."""
    return bool(request.stream_options and request.stream_options.include_usage)


def _plan(request: SamplingFields, parameters: GenerateParameters, stops: tuple[str, ...], top: int | None) -> Plan:
    include_usage = wants_usage(request)
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    return Plan(parameters, request.n or 1, stops, top, bool(request.stream), include_usage)


def _sampling(
    request: SamplingFields, limits: Limits, max_new_tokens: int | None, stops: tuple[str, ...], top_n: int
) -> GenerateParameters:
    if request.presence_penalty:
        raise InvalidRequest(
            "`presence_penalty` is not supported by text-generation-inference; use `frequency_penalty` "
            "or `repetition_penalty`.",
            param="presence_penalty",
        )
    if request.logit_bias:
        raise InvalidRequest("`logit_bias` is not supported by this model.", param="logit_bias")
    greedy = request.temperature == 0 or request.top_p == 0
    parameters: GenerateParameters = {"do_sample": not greedy, "details": True, "return_full_text": False}
    if max_new_tokens is not None:
        parameters["max_new_tokens"] = max_new_tokens
    if not greedy:
        if request.temperature is not None:
            parameters["temperature"] = request.temperature
        if request.top_p is not None and request.top_p < 1:
            parameters["top_p"] = request.top_p
        for name in _WARPERS:
            value = getattr(request, name)
            if value is not None:
                parameters[name] = value  # type: ignore[literal-required]
    if request.frequency_penalty:
        parameters["frequency_penalty"] = request.frequency_penalty
    if request.seed is not None:
        parameters["seed"] = as_u64(request.seed)
    if stops:
        # TGI refuses more than max_stop_sequences; the proxy enforces the rest itself.
        parameters["stop"] = list(stops[: limits.max_stop_sequences])
    if top_n:
        parameters["top_n_tokens"] = top_n
    for name in _PASSTHROUGH:
        value = getattr(request, name)
        if value is not None:
            parameters[name] = value  # type: ignore[literal-required]
    if request.grammar is not None:
        parameters["grammar"] = request.grammar
    return parameters


def _within_cap(top: int | None, limits: Limits, param: str) -> int | None:
    """Logprob alternatives asked for, refused by name above TGI's `max_top_n_tokens`."""
    if top is not None and top > limits.max_top_n_tokens:
        raise InvalidRequest(
            f"`{param}` must be at most {limits.max_top_n_tokens} for this model, got {top}.", param=param
        )
    return top


def _add_response_format(parameters: GenerateParameters, request: ChatCompletionRequest | CompletionRequest) -> None:
    grammar = _grammar(request.response_format)
    if grammar is None:
        return
    if request.grammar is not None:
        raise InvalidRequest("Give either `response_format` or `grammar`, not both.", param="grammar")
    parameters["grammar"] = grammar


def _json_object_regex(depth: int) -> str:
    """A regular expression for a JSON object whose values nest at most `depth` levels.

    TGI cannot constrain to "any JSON object": its JSON grammar needs a schema with `properties`
    (huggingface/text-generation-inference#2899), so `json_object` becomes a `regex` grammar. Only plain
    regex syntax (no lookaround, no backreferences), which TGI's regex engine compiles to an automaton;
    whitespace is at most one space, so a model cannot loop on blanks.
    """
    ws = "[ ]?"
    string = r'"([^"\\]|\\["\\/bfnrt])*"'
    number = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
    value = f"({string}|{number}|true|false|null)"
    for level in range(depth + 1):
        member = f"{string}{ws}:{ws}{value}"
        obj = rf"\{{{ws}({member}({ws},{ws}{member})*)?{ws}\}}"
        if level == depth:
            return obj
        array = rf"\[{ws}({value}({ws},{ws}{value})*)?{ws}\]"
        value = f"({string}|{number}|true|false|null|{array}|{obj})"
    raise AssertionError("unreachable")


# Depth 1 (objects and arrays inside the top object): TGI's regex engine builds its automaton in well under a
# second, where depth 2 took about 5 s here (interegular, 1,542 states against 374).
JSON_OBJECT_REGEX = _json_object_regex(depth=1)


def _grammar(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI `response_format` -> TGI `grammar` (which needs a schema with top-level `properties`)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "regex", "value": JSON_OBJECT_REGEX}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "`response_format.json_schema.schema` must be a JSON schema object.", param="response_format"
            )
        return {"type": "json", "value": schema}
    raise InvalidRequest(f"Unsupported `response_format` type {kind!r}.", param="response_format")
