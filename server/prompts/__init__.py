"""Chat templates: turn OpenAI chat messages into one prompt string for a text-generation upstream."""

from server.prompts.jinja import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    RenderedPrompt,
    TemplateLoadError,
    load_chat_template,
    normalize_messages,
)

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "RenderedPrompt",
    "TemplateLoadError",
    "load_chat_template",
    "normalize_messages",
]
