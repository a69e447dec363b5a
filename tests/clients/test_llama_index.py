"""LlamaIndex's `OpenAILike` LLM (llama-index-llms-openai-like) as a chat model and as a completion model,
streamed and not, run in its own venv (it requires openai<3, see `openai2/requirements.txt`)."""

from __future__ import annotations

import pytest

from tests.clients.isolated import CLIENTS_DIR, openai2_python, run_client
from tests.support import MODEL, Live

pytestmark = [pytest.mark.clients, pytest.mark.sockets]

CHAT_PROMPT = "<|im_start|>user\nCount.<|im_end|>\n<|im_start|>assistant\n"  # the chatml template's rendering


def test_llama_index_openai_like(live: Live) -> None:
    script = CLIENTS_DIR / "openai2" / "llama_index_client.py"
    result = run_client([str(openai2_python()), str(script), live.url, MODEL])

    assert result["chat"] == {"role": "assistant", "content": " 1."}
    assert result["chat_complete"] == " 1."  # complete() on a chat model goes through /v1/chat/completions
    assert "".join(result["stream_chat_deltas"]) == " 1."
    assert result["complete"] == " 1. 2"
    assert "".join(result["stream_complete_deltas"]) == " 1. 2"
    generations = [r for r in live.fake.requests if r.path.startswith("/generate")]
    assert [r.body["inputs"] for r in generations] == [CHAT_PROMPT, CHAT_PROMPT, CHAT_PROMPT, "Count:", "Count:"]
    assert [r.path for r in generations][2:] == ["/generate_stream", "/generate", "/generate_stream"]
