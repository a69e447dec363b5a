"""Chat templates: HF-compatible Jinja rendering in a sandbox, and the built-in formats in `templates/`.

The environment matches the one transformers builds for a tokenizer_config `chat_template`
(`transformers/utils/chat_template_utils.py`, `_compile_jinja_template`): `ImmutableSandboxedEnvironment`
with `trim_blocks`, `lstrip_blocks` and the loopcontrols extension, a `tojson` filter that keeps non-ASCII
text as is, and the globals `raise_exception` and `strftime_now`. Templates see `messages`,
`add_generation_prompt`, `bos_token`, `eos_token` and `tools` (None when the request has none), as in
transformers, plus `continue_final_message`, which is how the built-ins learn about a prefill.

Prefill: when the last message is an assistant message with text, the model should continue that text, so the
prompt must end right after it, with no end-of-turn marker and no new generation cue. The built-ins do this
themselves. User templates don't know about prefill, so they are rendered without the generation cue and the
text is cut right after the final message's content. This is what transformers' `continue_final_message` and
TGI's Messages API do (`router/src/infer/chat_template.rs`).

Built-in templates are data: `templates/<name>.jinja`, whose first line is a Jinja comment holding JSON
metadata, e.g. `{#- {"stop": ["</s>"], "bos_token": "<s>", "eos_token": "</s>"} -#}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.errors import InvalidRequest

# One file per name in templates/; test_prompts checks that this list and the folder agree.
BUILTIN_TEMPLATES: tuple[str, ...] = (
    "anthropic",
    "chatml",
    "chatml_falcon",
    "chatml_starchat",
    "falcon",
    "gemma",
    "llama2",
    "llama3",
    "mistral",
    "open_assistant",
    "phi3",
    "stablebeluga",
    "vicuna",
    "wizardlm",
    "zephyr",
)

_ROLES = ("system", "developer", "user", "assistant", "tool")
_KEPT_KEYS = ("name", "tool_calls", "tool_call_id")
_METADATA_LINE = re.compile(r"\{#-?\s*(\{.*\})\s*-?#\}")
_METADATA_KEYS = frozenset({"stop", "bos_token", "eos_token"})


class TemplateLoadError(ValueError):
    """A chat template cannot be loaded: unknown built-in, unreadable file or Jinja syntax error."""


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """The prompt for one request, and the stop strings that belong to its format."""

    text: str
    stop: tuple[str, ...]  # the template's own stop strings; empty for user templates


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A compiled chat template. Build it once with `load_chat_template`; `render` is called per request."""

    name: str
    stop: tuple[str, ...]
    _template: jinja2.Template = field(repr=False)
    _bos_token: str = field(repr=False)
    _eos_token: str = field(repr=False)
    _builtin: bool = field(repr=False)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> RenderedPrompt:
        normalized = normalize_messages(messages)
        final = normalized[-1]
        prefill = final["role"] == "assistant" and bool(final["content"])
        try:
            text = self._template.render(
                messages=_with_text_content(normalized) if self._builtin else normalized,
                tools=list(tools) if tools is not None else None,
                add_generation_prompt=add_generation_prompt and not prefill,
                continue_final_message=prefill,
                bos_token=self._bos_token,
                eos_token=self._eos_token,
            )
        # The template is code from a config file or a model card; whatever it raises (raise_exception, an
        # undefined attribute, `None + str`, a sandbox SecurityError, ...) means it cannot render this
        # request.
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            raise InvalidRequest(
                f"chat template '{self.name}' cannot render this conversation: {reason}", param="messages"
            ) from exc
        if prefill and not self._builtin:
            text = self._cut_after(text, final["content"])
        return RenderedPrompt(text=text, stop=self.stop)

    def _cut_after(self, text: str, content: str) -> str:
        # transformers searches for the stripped content because many templates `trim` it.
        final = content.strip()
        end = text.rfind(final)
        if end < 0:
            raise InvalidRequest(
                f"chat template '{self.name}' cannot continue the final assistant message: "
                "its text does not appear in the rendered prompt",
                param="messages",
            )
        return text[: end + len(final)]


def load_chat_template(
    spec: str, *, base_dir: Path, bos_token: str | None = None, eos_token: str | None = None
) -> ChatTemplate:
    """Compile `spec`: a built-in name, inline Jinja, or a template file (relative paths from `base_dir`)."""
    if spec in BUILTIN_TEMPLATES:
        source = _builtin_source(spec)
        meta = _metadata(spec, source)
        return ChatTemplate(
            name=spec,
            stop=tuple(meta.get("stop", ())),
            _template=_compile(spec, source),
            _bos_token=bos_token if bos_token is not None else meta.get("bos_token", ""),
            _eos_token=eos_token if eos_token is not None else meta.get("eos_token", ""),
            _builtin=True,
        )
    path = base_dir / spec  # an absolute spec replaces base_dir
    # Jinja markers are tested first: a template is never meant as a file name, so don't stat() it.
    if "{{" in spec or "{%" in spec:
        name, source = "inline", spec
    elif spec.endswith(".jinja") or _is_file(path):
        name, source = spec, _read(path)
    else:
        raise TemplateLoadError(
            f"unknown chat template {spec!r}: it is not a built-in ({', '.join(BUILTIN_TEMPLATES)}), "
            "a .jinja file or inline Jinja containing '{{' or '{%'"
        )
    return ChatTemplate(
        name=name,
        stop=(),
        _template=_compile(name, source),
        _bos_token=bos_token or "",
        _eos_token=eos_token or "",
        _builtin=False,
    )


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check the OpenAI messages and give them the shape HF templates expect.

    Content becomes a string (text parts joined with "\\n"), or stays None on an assistant message (tool
    calls); `developer` becomes `system`, which HF templates know; `name`, `tool_calls` and `tool_call_id`
    are kept, other keys are dropped.
    """
    if not messages:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    normalized: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"messages[{index}]: role {role!r} is not supported; use one of {', '.join(_ROLES)}",
                param="messages",
            )
        entry: dict[str, Any] = {
            "role": "system" if role == "developer" else role,
            "content": _content_text(index, role, message.get("content")),
        }
        entry.update((key, message[key]) for key in _KEPT_KEYS if message.get(key) is not None)
        normalized.append(entry)
    return normalized


def _content_text(index: int, role: str, content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":
            return None
        raise InvalidRequest(f"messages[{index}]: a {role} message needs content", param="messages")
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{index}]: content must be a string or a list of text parts", param="messages")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        if kind != "text":
            raise InvalidRequest(f"messages[{index}]: content part type {kind!r} is not supported", param="messages")
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"messages[{index}]: a text content part has no 'text' string", param="messages")
        texts.append(part["text"])
    return "\n".join(texts)


def _with_text_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The built-in formats have no tool-call syntax; like TGI, they show an assistant's calls as JSON.
    return [
        message if message["content"] is not None else {**message, "content": _tool_calls_text(message)}
        for message in messages
    ]


def _tool_calls_text(message: dict[str, Any]) -> str:
    return json.dumps(message["tool_calls"], ensure_ascii=False) if "tool_calls" in message else ""


def _compile(name: str, source: str) -> jinja2.Template:
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateLoadError(
            f"chat template {name!r} has a Jinja syntax error at line {exc.lineno}: {exc.message}"
        ) from exc


def _builtin_source(name: str) -> str:
    return resources.files("server.prompts").joinpath("templates", f"{name}.jinja").read_text(encoding="utf-8")


def _metadata(name: str, source: str) -> dict[str, Any]:
    match = _METADATA_LINE.fullmatch(source.partition("\n")[0])
    try:
        meta = json.loads(match.group(1)) if match else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not meta.keys() <= _METADATA_KEYS:
        raise TemplateLoadError(
            f"built-in chat template {name!r} must start with a metadata comment such as "
            '{#- {"stop": [...], "bos_token": "...", "eos_token": "..."} -#}'
        )
    return meta


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or a NUL byte
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateLoadError(f"chat template file {str(path)!r} cannot be read: {exc}") from exc


# The helpers below are transformers' template globals, with the same signatures and behaviour.


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)
