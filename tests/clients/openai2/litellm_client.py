"""LiteLLM as a client of the proxy (`openai/<model>` with `api_base`), run in the openai2 venv by
tests/clients/test_litellm.py. Argument: the proxy's base URL. Prints one JSON document of what came back."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import litellm

MESSAGES = [{"role": "user", "content": "Count."}]
litellm.suppress_debug_info = True  # else its error hints go to stdout, where this script's answer goes


def main(url: str, model: str) -> dict[str, Any]:
    common: dict[str, Any] = {"model": f"openai/{model}", "api_base": f"{url}/v1", "api_key": "sk-test"}
    chat = litellm.completion(messages=MESSAGES, max_tokens=3, **common)
    stream = litellm.completion(messages=MESSAGES, max_tokens=7, stream=True, **common)
    deltas = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    # The `text-completion-openai/` prefix sends LiteLLM's text_completion to /v1/completions.
    text_model = {**common, "model": f"text-completion-openai/{model}"}
    text = litellm.text_completion(prompt="Count:", max_tokens=5, **text_model)

    async def async_stream() -> list[str]:
        response = await litellm.acompletion(messages=MESSAGES, max_tokens=3, stream=True, **common)
        return [chunk.choices[0].delta.content or "" async for chunk in response if chunk.choices]

    try:
        litellm.completion(messages=MESSAGES, **{**common, "model": "openai/no-such-model"})
        error: dict[str, Any] = {}
    except litellm.NotFoundError as exc:
        error = {"class": type(exc).__name__, "status": exc.status_code, "message": str(exc)}
    return {
        "chat": {
            "content": chat.choices[0].message.content,
            "finish_reason": chat.choices[0].finish_reason,
            "completion_tokens": chat.usage.completion_tokens,
        },
        "stream_deltas": deltas,
        "async_stream_deltas": asyncio.run(async_stream()),
        "text_completion": {"text": text.choices[0].text, "finish_reason": text.choices[0].finish_reason},
        "error": error,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(sys.argv[1], sys.argv[2])))
