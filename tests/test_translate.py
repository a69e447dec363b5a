"""OpenAI request -> TGI parameters (server.api.openai.translate)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from server.api.openai.translate import chat_plan, completion_plan, prompts_of, stop_list, with_defaults
from server.errors import InvalidRequest
from server.generation.plan import Plan
from server.upstream.base import Limits

LIMITS = Limits()
WARPERS = ("temperature", "top_p", "top_k", "typical_p")


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate_json(json.dumps(body))


def completion(**fields: Any) -> CompletionRequest:
    body = {"model": "m", "prompt": "hi", **fields}
    return CompletionRequest.model_validate_json(json.dumps(body))


def plan_chat(limits: Limits = LIMITS, stops: tuple[str, ...] | None = None, **fields: Any) -> Plan:
    request = chat(**fields)
    return chat_plan(request, limits, max_new_tokens=32, stops=stop_list(request.stop) if stops is None else stops)


def plan_completion(limits: Limits = LIMITS, **fields: Any) -> Plan:
    request = completion(**fields)
    return completion_plan(request, limits, max_new_tokens=16, stops=stop_list(request.stop))


def invalid_param(plan: Any, **fields: Any) -> str | None:
    with pytest.raises(InvalidRequest) as info:
        plan(**fields)
    assert info.value.status == 400
    return info.value.param


# --- sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_always_details_and_no_full_text(plan: Any) -> None:
    parameters = plan().parameters
    assert parameters["details"] is True
    assert parameters["return_full_text"] is False
    assert parameters["do_sample"] is True


def test_max_new_tokens_passed() -> None:
    assert plan_chat().parameters["max_new_tokens"] == 32
    request = chat()
    parameters = chat_plan(request, LIMITS, max_new_tokens=None, stops=()).parameters
    assert "max_new_tokens" not in parameters


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_temperature_zero_is_greedy_without_warpers(plan: Any) -> None:
    parameters = plan(temperature=0, top_p=0.5, top_k=40, typical_p=0.9).parameters
    assert parameters["do_sample"] is False
    for name in WARPERS:
        assert name not in parameters


def test_temperature_zero_float_is_greedy() -> None:
    assert plan_chat(temperature=0.0).parameters["do_sample"] is False


def test_top_p_zero_is_greedy() -> None:
    parameters = plan_chat(top_p=0, temperature=0.7, top_k=5).parameters
    assert parameters["do_sample"] is False
    for name in WARPERS:
        assert name not in parameters


def test_top_p_one_is_omitted() -> None:
    parameters = plan_chat(top_p=1, temperature=0.7).parameters
    assert "top_p" not in parameters
    assert parameters["temperature"] == 0.7
    assert parameters["do_sample"] is True


def test_sampling_values_pass() -> None:
    parameters = plan_chat(temperature=1.3, top_p=0.9, frequency_penalty=0.5, seed=42).parameters
    assert parameters["temperature"] == 1.3
    assert parameters["top_p"] == 0.9
    assert parameters["frequency_penalty"] == 0.5
    assert parameters["seed"] == 42
    assert parameters["do_sample"] is True


def test_zero_frequency_penalty_is_left_out() -> None:
    assert "frequency_penalty" not in plan_chat(frequency_penalty=0).parameters


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_tgi_extras_pass_through(plan: Any) -> None:
    grammar = {"type": "regex", "value": "[0-9]+"}
    parameters = plan(
        top_k=40,
        repetition_penalty=1.1,
        typical_p=0.95,
        truncate=512,
        watermark=True,
        grammar=grammar,
        adapter_id="my-lora",
    ).parameters
    assert parameters["top_k"] == 40
    assert parameters["repetition_penalty"] == 1.1
    assert parameters["typical_p"] == 0.95
    assert parameters["truncate"] == 512
    assert parameters["watermark"] is True
    assert parameters["grammar"] == grammar
    assert parameters["adapter_id"] == "my-lora"


def test_non_warper_extras_survive_greedy() -> None:
    parameters = plan_chat(temperature=0, repetition_penalty=1.2, truncate=100).parameters
    assert parameters["repetition_penalty"] == 1.2
    assert parameters["truncate"] == 100


# --- stops ---------------------------------------------------------------------------------------------


def test_stop_string() -> None:
    plan = plan_chat(stop="END")
    assert plan.stops == ("END",)
    assert plan.parameters["stop"] == ["END"]


def test_stop_list() -> None:
    plan = plan_chat(stop=["a", "b"])
    assert plan.stops == ("a", "b")
    assert plan.parameters["stop"] == ["a", "b"]


def test_no_stop_key_without_stops() -> None:
    plan = plan_chat()
    assert plan.stops == ()
    assert "stop" not in plan.parameters


def test_stop_list_combines_dedupes_and_drops_empty() -> None:
    assert stop_list("x", ["</s>", "x"], ["", "y"]) == ("x", "</s>", "y")
    assert stop_list(None) == ()
    assert stop_list(["a", "a", ""]) == ("a",)


def test_combined_stops_truncated_for_tgi_but_all_kept_in_plan() -> None:
    request = chat(stop=["s1", "s2", "s3"])
    stops = stop_list(request.stop, ["<|im_end|>"], ["cfg1", "cfg2"])
    plan = chat_plan(request, Limits(max_stop_sequences=2), max_new_tokens=8, stops=stops)
    assert plan.stops == ("s1", "s2", "s3", "<|im_end|>", "cfg1", "cfg2")
    assert plan.parameters["stop"] == ["s1", "s2"]

    plan = chat_plan(request, LIMITS, max_new_tokens=8, stops=stops)
    assert len(plan.parameters["stop"]) == LIMITS.max_stop_sequences


# --- choices -------------------------------------------------------------------------------------------


def test_seed_plus_j_per_choice() -> None:
    plan = plan_chat(n=3, seed=10)
    assert plan.n == 3
    assert [plan.for_choice(j)["seed"] for j in range(3)] == [10, 11, 12]
    assert plan.parameters["seed"] == 10  # the shared parameters are not modified


def test_no_seed_means_identical_parameters_per_choice() -> None:
    plan = plan_chat(n=2)
    assert "seed" not in plan.for_choice(1)
    assert plan.for_choice(1) == plan.parameters


def test_n_defaults_to_one() -> None:
    assert plan_chat().n == 1


# --- refused values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_presence_penalty_nonzero_refused(plan: Any) -> None:
    assert invalid_param(plan, presence_penalty=0.5) == "presence_penalty"
    assert invalid_param(plan, presence_penalty=-1) == "presence_penalty"


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_presence_penalty_zero_accepted(plan: Any) -> None:
    parameters = plan(presence_penalty=0).parameters
    assert "presence_penalty" not in parameters


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_logit_bias(plan: Any) -> None:
    plan(logit_bias={})
    assert invalid_param(plan, logit_bias={"50256": -100}) == "logit_bias"


def test_top_logprobs_above_cap() -> None:
    limits = Limits(max_top_n_tokens=3)
    assert invalid_param(plan_chat, limits=limits, logprobs=True, top_logprobs=4) == "top_logprobs"
    plan = plan_chat(limits=limits, logprobs=True, top_logprobs=3)
    assert plan.top_logprobs == 3
    assert plan.parameters["top_n_tokens"] == 3


def test_top_logprobs_without_logprobs() -> None:
    assert invalid_param(plan_chat, top_logprobs=2) == "top_logprobs"
    assert invalid_param(plan_chat, top_logprobs=2, logprobs=False) == "top_logprobs"


def test_chat_logprobs_without_top() -> None:
    plan = plan_chat(logprobs=True)
    assert plan.top_logprobs == 0
    assert "top_n_tokens" not in plan.parameters
    assert plan_chat().top_logprobs is None
    assert plan_chat(logprobs=False).top_logprobs is None


def test_completion_logprobs() -> None:
    assert invalid_param(plan_completion, limits=Limits(max_top_n_tokens=2), logprobs=3) == "logprobs"
    plan = plan_completion(logprobs=2)
    assert plan.top_logprobs == 2
    assert plan.parameters["top_n_tokens"] == 2
    assert plan_completion(logprobs=0).top_logprobs == 0
    assert plan_completion().top_logprobs is None


def test_suffix_refused() -> None:
    assert invalid_param(plan_completion, suffix="tail") == "suffix"


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_stream_options_without_stream(plan: Any) -> None:
    assert invalid_param(plan, stream_options={"include_usage": True}) == "stream_options"
    assert invalid_param(plan, stream=False, stream_options={"include_usage": True}) == "stream_options"


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_stream_options_include_usage(plan: Any) -> None:
    with_usage = plan(stream=True, stream_options={"include_usage": True})
    assert with_usage.stream is True
    assert with_usage.include_usage is True
    without = plan(stream=True)
    assert without.include_usage is False


def test_best_of() -> None:
    assert plan_completion(best_of=2, n=1).parameters["best_of"] == 2
    assert "best_of" not in plan_completion(best_of=1).parameters
    assert invalid_param(plan_completion, best_of=2, stream=True) == "best_of"
    assert invalid_param(plan_completion, best_of=3) == "best_of"
    assert invalid_param(plan_completion, limits=Limits(max_best_of=4), best_of=2, n=3) == "best_of"


# --- response_format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_response_format_json_object(plan: Any) -> None:
    grammar = plan(response_format={"type": "json_object"}).parameters["grammar"]
    assert grammar["type"] == "regex"
    matches = re.compile(grammar["value"]).fullmatch
    for good in ("{}", '{"a": 1}', '{"name": "x", "tags": ["a", 2.5e3, null], "address": {"city": "\\"Rome\\""}}'):
        assert json.loads(good) is not None and matches(good), good
    for bad in ("[]", "1", '"x"', '{"a":}', "{a: 1}", '{"a": 1,}', '{"a": {"b": {"c": 1}}}'):
        assert not matches(bad), bad


def test_response_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    assert plan_chat(response_format=response_format).parameters["grammar"] == {"type": "json", "value": schema}


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"schema": "not an object"}},
        {"type": "json_schema", "json_schema": "nope"},
        {"type": "xml"},
    ],
)
def test_bad_response_format(response_format: dict[str, Any]) -> None:
    assert invalid_param(plan_chat, response_format=response_format) == "response_format"


def test_response_format_text_adds_no_grammar() -> None:
    assert "grammar" not in plan_chat(response_format={"type": "text"}).parameters


@pytest.mark.parametrize("plan", [plan_chat, plan_completion])
def test_response_format_and_grammar_together_refused(plan: Any) -> None:
    param = invalid_param(plan, response_format={"type": "json_object"}, grammar={"type": "regex", "value": "a"})
    assert param == "grammar"


def test_echo_with_logprobs_asks_for_prefill_unless_streamed() -> None:
    assert plan_completion(echo=True, logprobs=1).parameters["decoder_input_details"] is True
    assert "decoder_input_details" not in plan_completion(echo=True, logprobs=1, stream=True).parameters
    assert "decoder_input_details" not in plan_completion(echo=True).parameters


# --- prompts -------------------------------------------------------------------------------------------


def test_prompts_of_string() -> None:
    assert prompts_of(completion(prompt="hello")) == ["hello"]


def test_prompts_of_list() -> None:
    assert prompts_of(completion(prompt=["a", "b", ""])) == ["a", "b", ""]


@pytest.mark.parametrize("prompt", [[1, 2, 3], [[1, 2], [3]]])
def test_prompts_of_token_ids_refused(prompt: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        prompts_of(completion(prompt=prompt))
    assert info.value.param == "prompt"
    assert info.value.status == 400


def test_prompts_of_empty_list_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        prompts_of(completion(prompt=[]))
    assert info.value.param == "prompt"
    assert info.value.code == "empty_array"


# --- defaults ------------------------------------------------------------------------------------------


def test_with_defaults_fills_only_missing_fields() -> None:
    request = chat(temperature=0.2)
    filled = with_defaults(request, {"temperature": 0.9, "max_tokens": 100, "top_p": 0.5})
    assert filled.temperature == 0.2
    assert filled.max_tokens == 100
    assert filled.top_p == 0.5
    assert request.max_tokens is None  # the original is untouched


def test_with_defaults_keeps_explicit_zero_and_false() -> None:
    request = chat(temperature=0, stream=False)
    filled = with_defaults(request, {"temperature": 0.7, "stream": True})
    assert filled.temperature == 0
    assert filled.stream is False


def test_with_defaults_nothing_missing_returns_same_request() -> None:
    request = completion(max_tokens=5)
    assert with_defaults(request, {"max_tokens": 50}) is request
    assert with_defaults(request, {}) is request
