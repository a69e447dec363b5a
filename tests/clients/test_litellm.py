"""LiteLLM used as a client (`openai/<model>` with `api_base`, and `text-completion-openai/` for
/v1/completions), run in its own venv (it requires openai<3, see `openai2/requirements.txt`)."""

from __future__ import annotations

import os

import pytest

from tests.clients.isolated import CLIENTS_DIR, openai2_python, run_client
from tests.support import MODEL, Live

pytestmark = [pytest.mark.clients, pytest.mark.sockets]

# LiteLLM fetches its model price list from the network at import unless told to use the bundled copy.
OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def test_litellm_client(live: Live) -> None:
    script = CLIENTS_DIR / "openai2" / "litellm_client.py"
    result = run_client([str(openai2_python()), str(script), live.url, MODEL], env={**os.environ, **OFFLINE})

    assert result["chat"] == {"content": " 1.", "finish_reason": "length", "completion_tokens": 3}
    assert "".join(result["stream_deltas"]) == " 1. 2. "
    assert "".join(result["async_stream_deltas"]) == " 1."
    assert result["text_completion"] == {"text": " 1. 2", "finish_reason": "length"}
    assert result["error"]["class"] == "NotFoundError" and result["error"]["status"] == 404
    assert "no-such-model" in result["error"]["message"]
    generations = [r for r in live.fake.requests if r.path.startswith("/generate")]
    assert [r.path for r in generations] == ["/generate", "/generate_stream", "/generate", "/generate_stream"]
    assert generations[2].body["inputs"] == "Count:"  # the text completion went to /v1/completions, untemplated
