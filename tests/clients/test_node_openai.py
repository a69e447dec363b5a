"""The official `openai` npm SDK (installed by npm from `node/package.json`) against the proxy on a real socket:
chat and completions, streamed and not, and an error raised as the SDK's own `NotFoundError`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.clients.isolated import CLIENTS_DIR, node_modules, run_client
from tests.support import MODEL, Live

pytestmark = [pytest.mark.clients, pytest.mark.sockets]


def test_node_openai_sdk(live: Live) -> None:
    folder = node_modules()
    script = shutil.copy(CLIENTS_DIR / "node" / "client.mjs", folder / "client.mjs")
    version = json.loads((folder / "node_modules" / "openai" / "package.json").read_text())["version"]
    assert int(version.split(".")[0]) >= 7, version  # the range in package.json: the current major

    result = run_client(["node", str(Path(script)), live.url, MODEL], cwd=folder)

    assert result["chat"] == {"content": " 1.", "finish_reason": "length"}
    stream = result["chat_stream"]
    assert "".join(stream["deltas"]) == " 1. 2. "
    assert stream["finish_reason"] == "length"
    assert stream["usage"]["completion_tokens"] == 7
    assert result["completion"] == {"text": " 1. 2", "finish_reason": "length"}
    assert "".join(result["completion_stream_deltas"]) == " 1. 2"
    assert result["error"] == {
        "name": "NotFoundError",
        "status": 404,
        "code": "model_not_found",
        "type": "invalid_request_error",
        "param": "model",
    }
    assert [r.path for r in live.fake.requests if r.path.startswith("/generate")] == [
        "/generate",
        "/generate_stream",
        "/generate",
        "/generate_stream",
    ]
