"""LlamaIndex's `OpenAILike` LLM as a client of the proxy, run in the openai2 venv by
tests/clients/test_llama_index.py. Arguments: the proxy's base URL and a model name. Prints one JSON
document of what came back."""

from __future__ import annotations

import json
import sys
from typing import Any

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

MESSAGES = [ChatMessage(role="user", content="Count.")]


def main(url: str, model: str) -> dict[str, Any]:
    common: dict[str, Any] = {"model": model, "api_base": f"{url}/v1", "api_key": "sk-test", "max_retries": 0}
    chat_llm = OpenAILike(is_chat_model=True, max_tokens=3, **common)
    text_llm = OpenAILike(is_chat_model=False, max_tokens=5, **common)
    chat = chat_llm.chat(MESSAGES)
    return {
        "chat": {"role": chat.message.role.value, "content": chat.message.content},
        "chat_complete": chat_llm.complete("Count.").text,
        "stream_chat_deltas": [part.delta for part in chat_llm.stream_chat(MESSAGES)],
        "complete": text_llm.complete("Count:").text,
        "stream_complete_deltas": [part.delta for part in text_llm.stream_complete("Count:")],
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(sys.argv[1], sys.argv[2])))
