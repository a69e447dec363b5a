"""Chat templates: built-in formats byte for byte, message normalisation, user templates and failures."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest

from server.errors import InvalidRequest
from server.prompts import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    TemplateLoadError,
    load_chat_template,
    normalize_messages,
)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE.parent / "server" / "prompts" / "templates"

Messages = list[dict[str, Any]]

HELLO: Messages = [{"role": "user", "content": "Hello!"}]
SYSTEM_USER: Messages = [
    {"role": "system", "content": "You are a chat bot."},
    {"role": "user", "content": "Hello!"},
]
MULTI_TURN: Messages = [
    {"role": "user", "content": "U1"},
    {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "U2"},
]
PREFILL: Messages = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Sure"},
]
TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": "6*7"}'}}]
CALLS_JSON = json.dumps(TOOL_CALLS)
TOOL_TURN: Messages = [
    {"role": "user", "content": "What is 6*7?"},
    {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS},
    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
]


def load(spec: str, **kwargs: Any) -> ChatTemplate:
    return load_chat_template(spec, base_dir=HERE, **kwargs)


def render(spec: str, messages: Messages, **kwargs: Any) -> str:
    return load(spec).render(messages, **kwargs).text


def test_builtin_names_are_sorted_and_match_the_template_files() -> None:
    assert list(BUILTIN_TEMPLATES) == sorted(BUILTIN_TEMPLATES)
    assert set(BUILTIN_TEMPLATES) == {path.stem for path in TEMPLATES_DIR.glob("*.jinja")}


# --- EasyLLM formats (philschmid/easyllm, easyllm/prompt_utils/), without their defects --------------------


@pytest.mark.parametrize(
    ("name", "messages", "expected"),
    [
        # EasyLLM's tests, without the leading <s> (TGI adds BOS) ...
        ("llama2", HELLO, "[INST] Hello! [/INST]"),
        ("llama2", SYSTEM_USER, "[INST] <<SYS>>\nYou are a chat bot.\n<</SYS>>\n\nHello! [/INST]"),
        ("llama2", MULTI_TURN, "[INST] U1 [/INST] A1 </s><s>[INST] U2 [/INST]"),
        # ... user content stripped, assistant and system content not.
        (
            "llama2",
            [
                {"role": "system", "content": " S "},
                {"role": "user", "content": " U1 "},
                {"role": "assistant", "content": " A1 "},
                {"role": "user", "content": "U2"},
            ],
            "[INST] <<SYS>>\n S \n<</SYS>>\n\nU1 [/INST]  A1  </s><s>[INST] U2 [/INST]",
        ),
        # No "\n\n" left over from an absent system message.
        ("vicuna", HELLO, "USER: Hello!\nASSISTANT: "),
        ("vicuna", SYSTEM_USER, "You are a chat bot.\n\nUSER: Hello!\nASSISTANT: "),
        ("vicuna", MULTI_TURN, "USER: U1\nASSISTANT: A1</s>\nUSER: U2\nASSISTANT: "),
        ("wizardlm", HELLO, "USER: Hello! ASSISTANT: "),
        ("wizardlm", SYSTEM_USER, "You are a chat bot. USER: Hello! ASSISTANT: "),
        ("wizardlm", MULTI_TURN, "USER: U1 ASSISTANT: A1 USER: U2 ASSISTANT: "),
        # EasyLLM's "### System:\n\n\n" block for a missing system message is gone.
        ("stablebeluga", HELLO, "### User:\nHello!\n\n### Assistant:"),
        (
            "stablebeluga",
            SYSTEM_USER,
            "### System:\nYou are a chat bot.\n\n### User:\nHello!\n\n### Assistant:",
        ),
        (
            "stablebeluga",
            MULTI_TURN,
            "### User:\nU1\n\n### Assistant:\nA1\n\n### User:\nU2\n\n### Assistant:",
        ),
        ("open_assistant", HELLO, "<|prompter|>Hello!</s><|assistant|>"),
        (
            "open_assistant",
            SYSTEM_USER,
            "<|system|>You are a chat bot.</s><|prompter|>Hello!</s><|assistant|>",
        ),
        (
            "open_assistant",
            MULTI_TURN,
            "<|prompter|>U1</s><|assistant|>A1</s><|prompter|>U2</s><|assistant|>",
        ),
        ("chatml_starchat", HELLO, "<|user|>\nHello!<|end|>\n<|assistant|>"),
        (
            "chatml_starchat",
            SYSTEM_USER,
            "<|system|>\nYou are a chat bot.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>",
        ),
        (
            "chatml_starchat",
            MULTI_TURN,
            "<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>",
        ),
        (
            "chatml_falcon",
            SYSTEM_USER,
            "<|system|>\nYou are a chat bot.<|endoftext|>\n<|user|>\nHello!<|endoftext|>\n<|assistant|>",
        ),
        (
            "chatml_falcon",
            MULTI_TURN,
            "<|user|>\nU1<|endoftext|>\n<|assistant|>\nA1<|endoftext|>\n<|user|>\nU2<|endoftext|>\n<|assistant|>",
        ),
        ("falcon", HELLO, "User: Hello!\nFalcon: "),
        ("falcon", SYSTEM_USER, "System: You are a chat bot.\nUser: Hello!\nFalcon: "),
        ("falcon", MULTI_TURN, "User: U1\nFalcon: A1\nUser: U2\nFalcon: "),
        # Falcon's system text is not stripped; the turns are.
        (
            "falcon",
            [{"role": "system", "content": " S "}, {"role": "user", "content": " U "}],
            "System:  S \nUser: U\nFalcon: ",
        ),
        ("anthropic", HELLO, "\n\nHuman: Hello!\n\nAssistant: "),
        ("anthropic", SYSTEM_USER, "You are a chat bot.\n\nHuman: Hello!\n\nAssistant: "),
        ("anthropic", MULTI_TURN, "\n\nHuman: U1\n\nAssistant: A1\n\nHuman: U2\n\nAssistant: "),
    ],
)
def test_easyllm_formats(name: str, messages: Messages, expected: str) -> None:
    assert render(name, messages) == expected


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("llama2", ("</s>",)),
        ("vicuna", ("</s>",)),
        ("wizardlm", ("</s>",)),
        ("stablebeluga", ("</s>",)),
        ("open_assistant", ("</s>",)),
        ("chatml_starchat", ("<|end|>",)),
        ("chatml_falcon", ("<|endoftext|>",)),
        ("falcon", ("\nUser:", "<|endoftext|>")),
        ("anthropic", ("\n\nHuman:",)),
        ("chatml", ("<|im_end|>",)),
        ("llama3", ("<|eot_id|>",)),
        ("mistral", ("</s>",)),
        ("zephyr", ("</s>",)),
        ("gemma", ("<end_of_turn>",)),
        ("phi3", ("<|end|>",)),
    ],
)
def test_builtin_stop_strings_come_with_the_prompt(name: str, stop: tuple[str, ...]) -> None:
    template = load(name)
    assert template.stop == stop
    assert template.render(HELLO).stop == stop


# --- Current formats, against the models' tokenizer_config.json templates (no BOS: TGI adds it) -----------

CURRENT_FORMATS = {
    "chatml": (
        "<|im_start|>system\nYou are a chat bot.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>user\nHello!<|im_end|>\n",
        "<|im_start|>assistant\n",
    ),
    "llama3": (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a chat bot.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    # Mistral has no separate cue: " [/INST]" belongs to the user turn.
    "mistral": (
        " [INST] You are a chat bot.\n\nHello! [/INST]",
        " [INST] U1 [/INST] A1</s> [INST] U2 [/INST]",
        " [INST] Hello! [/INST]",
        "",
    ),
    "zephyr": (
        "<|system|>\nYou are a chat bot.</s>\n<|user|>\nHello!</s>\n<|assistant|>\n",
        "<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|user|>\nU2</s>\n<|assistant|>\n",
        "<|user|>\nHello!</s>\n",
        "<|assistant|>\n",
    ),
    "gemma": (
        "<start_of_turn>user\nYou are a chat bot.\n\nHello!<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n"
        "<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nHello!<end_of_turn>\n",
        "<start_of_turn>model\n",
    ),
    # Phi-3 ends with eos_token when there is no cue, as its HF template does.
    "phi3": (
        "<|system|>\nYou are a chat bot.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n",
        "<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n",
        "<|user|>\nHello!<|end|>\n<|endoftext|>",
        "<|assistant|>\n",
    ),
}


@pytest.mark.parametrize("name", CURRENT_FORMATS)
def test_current_formats(name: str) -> None:
    system_user, multi_turn, without_cue, cue = CURRENT_FORMATS[name]
    assert render(name, SYSTEM_USER) == system_user
    assert render(name, MULTI_TURN) == multi_turn
    assert render(name, HELLO, add_generation_prompt=False) == without_cue
    assert render(name, HELLO) == without_cue.removesuffix("<|endoftext|>") + cue


def test_formats_that_strip_content_and_those_that_do_not() -> None:
    padded: Messages = [{"role": "user", "content": " Hi "}]
    assert render("llama3", padded) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render("gemma", padded) == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert render("chatml", padded) == "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n"
    assert render("mistral", padded) == " [INST]  Hi  [/INST]"


def test_easyllm_formats_honour_add_generation_prompt() -> None:
    assert render("vicuna", HELLO, add_generation_prompt=False) == "USER: Hello!\n"
    assert render("anthropic", HELLO, add_generation_prompt=False) == "\n\nHuman: Hello!"
    # " [/INST]" closes the user's turn in Llama 2, so it stays.
    assert render("llama2", HELLO, add_generation_prompt=False) == "[INST] Hello! [/INST]"


def test_builtin_bos_and_eos_can_be_overridden() -> None:
    template = load("llama2", bos_token="<B>", eos_token="<E>")
    assert template.render(MULTI_TURN).text == "[INST] U1 [/INST] A1 <E><B>[INST] U2 [/INST]"
    assert (
        load("vicuna", eos_token="<E>").render(MULTI_TURN).text == "USER: U1\nASSISTANT: A1<E>\nUSER: U2\nASSISTANT: "
    )


# --- Prefill, tool and developer roles, later system messages ----------------------------------------------

PREFILLS = {
    "llama2": "[INST] Hi [/INST] Sure",
    "vicuna": "USER: Hi\nASSISTANT: Sure",
    "wizardlm": "USER: Hi ASSISTANT: Sure",
    "stablebeluga": "### User:\nHi\n\n### Assistant:\nSure",
    "open_assistant": "<|prompter|>Hi</s><|assistant|>Sure",
    "chatml_starchat": "<|user|>\nHi<|end|>\n<|assistant|>\nSure",
    "chatml_falcon": "<|user|>\nHi<|endoftext|>\n<|assistant|>\nSure",
    "falcon": "User: Hi\nFalcon: Sure",
    "anthropic": "\n\nHuman: Hi\n\nAssistant: Sure",
    "chatml": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure",
    "llama3": (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nSure"
    ),
    "mistral": " [INST] Hi [/INST] Sure",
    "zephyr": "<|user|>\nHi</s>\n<|assistant|>\nSure",
    "gemma": "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nSure",
    "phi3": "<|user|>\nHi<|end|>\n<|assistant|>\nSure",
}


def test_every_builtin_has_a_prefill_case() -> None:
    assert set(PREFILLS) == set(BUILTIN_TEMPLATES)


@pytest.mark.parametrize("name", PREFILLS)
def test_final_assistant_message_is_continued(name: str) -> None:
    assert render(name, PREFILL) == PREFILLS[name]


def test_empty_final_assistant_message_is_a_finished_turn_not_a_prefill() -> None:
    messages: Messages = [*HELLO, {"role": "assistant", "content": ""}]
    assert render("chatml", messages) == (
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # EasyLLM formats have no tool turn: a tool result is a user turn.
        ("vicuna", f"USER: What is 6*7?\nASSISTANT: {CALLS_JSON}</s>\nUSER: 42\nASSISTANT: "),
        ("anthropic", f"\n\nHuman: What is 6*7?\n\nAssistant: {CALLS_JSON}\n\nHuman: 42\n\nAssistant: "),
        (
            "chatml",
            f"<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n{CALLS_JSON}<|im_end|>\n"
            "<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "llama3",
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 6*7?<|eot_id|>"
            f"<|start_header_id|>assistant<|end_header_id|>\n\n{CALLS_JSON}<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("mistral", f" [INST] What is 6*7? [/INST] {CALLS_JSON}</s> [INST] 42 [/INST]"),
        (
            "gemma",
            "<start_of_turn>user\nWhat is 6*7?<end_of_turn>\n"
            f"<start_of_turn>model\n{CALLS_JSON}<end_of_turn>\n"
            "<start_of_turn>user\n42<end_of_turn>\n<start_of_turn>model\n",
        ),
    ],
)
def test_tool_results_and_tool_calls(name: str, expected: str) -> None:
    assert render(name, TOOL_TURN) == expected


def test_developer_is_rendered_as_system() -> None:
    messages: Messages = [{"role": "developer", "content": "Be brief."}, *HELLO]
    assert render("chatml", messages).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert render("vicuna", messages) == "Be brief.\n\nUSER: Hello!\nASSISTANT: "


LATE_SYSTEM: Messages = [*MULTI_TURN[:2], {"role": "system", "content": "Be brief."}, MULTI_TURN[2]]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "stablebeluga",
            "### User:\nU1\n\n### Assistant:\nA1\n\n### System:\nBe brief.\n\n### User:\nU2\n\n### Assistant:",
        ),
        ("falcon", "User: U1\nFalcon: A1\nSystem: Be brief.\nUser: U2\nFalcon: "),
        (
            "chatml",
            "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
        ),
    ],
)
def test_later_system_message_where_the_format_has_a_system_turn(name: str, expected: str) -> None:
    assert render(name, LATE_SYSTEM) == expected


@pytest.mark.parametrize("name", ["llama2", "vicuna", "wizardlm", "anthropic", "gemma", "mistral"])
def test_later_system_message_where_the_format_has_none_is_rejected(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        render(name, LATE_SYSTEM)
    assert caught.value.param == "messages"
    assert caught.value.message.startswith(f"chat template '{name}' cannot render this conversation: ")
    assert "system message" in caught.value.message


def test_alternation_is_enforced_where_the_model_requires_it() -> None:
    with pytest.raises(InvalidRequest, match="roles must alternate"):
        render("mistral", [*HELLO, *HELLO])


# --- Message normalisation ---------------------------------------------------------------------------------


def test_normalize_messages_joins_text_parts_and_keeps_tool_keys() -> None:
    messages: Messages = [
        {"role": "developer", "content": "Be brief.", "name": "ops"},
        {"role": "user", "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]},
        {"role": "assistant", "tool_calls": TOOL_CALLS, "refusal": None},
        {"role": "tool", "tool_call_id": "call_1", "content": "42", "name": None},
    ]
    original = json.dumps(messages)
    assert normalize_messages(messages) == [
        {"role": "system", "content": "Be brief.", "name": "ops"},
        {"role": "user", "content": "line 1\nline 2"},
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]
    assert json.dumps(messages) == original  # the caller's messages are left alone


def test_text_parts_reach_the_template_as_one_string() -> None:
    messages: Messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert render("vicuna", messages) == "USER: a\nb\nASSISTANT: "


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
            ],
            "messages[1]: content part type 'image_url' is not supported",
        ),
        (
            [{"role": "user", "content": [{"type": "text"}]}],
            "messages[0]: a text content part has no 'text' string",
        ),
        ([{"role": "user", "content": ["plain"]}], "messages[0]: content part type 'str' is not supported"),
        ([{"role": "function", "content": "x"}], "messages[0]: role 'function' is not supported"),
        ([{"content": "x"}], "messages[0]: role None is not supported"),
        ([{"role": "user"}], "messages[0]: a user message needs content"),
        ([{"role": "tool", "content": None}], "messages[0]: a tool message needs content"),
        ([{"role": "user", "content": 3}], "messages[0]: content must be a string or a list of text parts"),
        ([], "messages must contain at least one message"),
    ],
)
def test_unusable_messages_are_invalid_requests(messages: Messages, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        load("chatml").render(messages)
    assert caught.value.param == "messages"
    assert caught.value.message.startswith(reason)


# --- User templates ----------------------------------------------------------------------------------------

INLINE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_inline_template() -> None:
    template = load(INLINE)
    assert template.name == "inline"
    assert template.stop == ()
    prompt = template.render(SYSTEM_USER)
    assert prompt.text == "<system>You are a chat bot.</system><user>Hello!</user><assistant>"
    assert prompt.stop == ()


def test_inline_template_follows_transformers_whitespace_rules() -> None:
    source = "{% for m in messages %}\n  {% if m.role == 'user' %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}"
    assert render(source, [*HELLO, *HELLO]) == "Hello!\nHello!\n"


def test_file_template_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "tagged.jinja").write_text(INLINE + "\n", encoding="utf-8")
    template = load_chat_template("templates/tagged.jinja", base_dir=tmp_path)
    assert template.name == "templates/tagged.jinja"
    assert template.render(HELLO).text == "<user>Hello!</user><assistant>"


def test_file_template_without_jinja_suffix_and_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "template.txt"
    path.write_text("{{ messages[0].content }}", encoding="utf-8")
    assert load_chat_template("template.txt", base_dir=tmp_path).render(HELLO).text == "Hello!"
    assert load_chat_template(str(path), base_dir=HERE).render(HELLO).text == "Hello!"


def test_missing_template_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateLoadError, match="missing.jinja.* cannot be read"):
        load_chat_template("missing.jinja", base_dir=tmp_path)


def test_user_templates_get_bos_and_eos_only_when_given() -> None:
    source = "[{{ bos_token }}|{{ eos_token }}]"
    assert render(source, HELLO) == "[|]"
    assert load(source, bos_token="<s>", eos_token="</s>").render(HELLO).text == "[<s>|</s>]"


def test_tools_are_available_to_templates() -> None:
    source = "{% if tools is none %}no tools{% else %}{{ tools | tojson }}{% endif %}"
    tool = {"type": "function", "function": {"name": "café", "parameters": {}}}
    assert render(source, HELLO) == "no tools"
    assert render(source, HELLO, tools=[tool]) == json.dumps([tool], ensure_ascii=False)
    assert render("{{ tools[0] | tojson(indent=2) }}", HELLO, tools=[{"a": 1}]) == '{\n  "a": 1\n}'


def test_strftime_now_is_available_to_templates() -> None:
    assert render("{{ strftime_now('%Y') }}", HELLO) == str(datetime.now().year)


def test_user_template_prefill_is_cut_after_the_final_message() -> None:
    assert render(INLINE, PREFILL) == "<user>Hi</user><assistant>Sure"
    # Templates that trim content are handled like transformers' continue_final_message does.
    trimming = "{% for m in messages %}[{{ m.content | trim }}]{% endfor %}"
    assert render(trimming, [*HELLO, {"role": "assistant", "content": "Sure "}]) == "[Hello!][Sure"


def test_user_template_prefill_that_drops_the_text() -> None:
    with pytest.raises(InvalidRequest, match="cannot continue the final assistant message") as caught:
        render("{{ messages[0].content }}", PREFILL)
    assert caught.value.param == "messages"


# --- Failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "{{ raise_exception('Only user and assistant roles are supported!') }}",
            "Only user and assistant roles are supported!",
        ),
        ("{{ messages[0].content + 1 }}", 'can only concatenate str (not "int") to str'),
        ("{{ messages[0].missing.deeper }}", "'dict object' has no attribute 'missing'"),
        ("{{ messages.append(1) }}", "unsafe"),  # the sandbox forbids changing the request
        ("{{ messages[0].missing | tojson }}", "is not JSON serializable"),
    ],
)
def test_render_failures_are_invalid_requests(source: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        render(source, HELLO)
    assert caught.value.param == "messages"
    assert caught.value.message.startswith("chat template 'inline' cannot render this conversation: ")
    assert reason in caught.value.message


def test_syntax_error_fails_at_load_time() -> None:
    with pytest.raises(TemplateLoadError, match=r"'inline' has a Jinja syntax error at line 2"):
        load("{% for m in messages %}\n{{ m.content }")


def test_unknown_template_lists_the_builtins() -> None:
    with pytest.raises(TemplateLoadError) as caught:
        load("llama-2")
    assert "unknown chat template 'llama-2'" in str(caught.value)
    for name in BUILTIN_TEMPLATES:
        assert name in str(caught.value)


def test_templates_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    templates = [load(name) for name in (*BUILTIN_TEMPLATES, INLINE)]

    def no_compiling(*_args: object, **_kwargs: object) -> jinja2.Template:
        raise AssertionError("render() compiled the template again")

    monkeypatch.setattr(jinja2.Environment, "from_string", no_compiling)
    for template in templates:
        assert template.render(HELLO).text


def test_chat_template_is_immutable() -> None:
    template = load("chatml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.name = "other"  # type: ignore[misc]
