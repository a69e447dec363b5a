"""The repository's own `config.yaml`, served by the console script as the README's quick start does, with
no TGI anywhere: the embedded model answers, the TGI model says its upstream is unreachable, and `/ready`
answers 200 once the embedded model is loaded (`server.ready_when: any`, the default)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

pytestmark = pytest.mark.model

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_shipped_config_is_ready_once_the_embedded_model_is_loaded() -> None:
    script = Path(sys.executable).with_name("hf-openai-proxy")
    port, nothing_there = free_port(), free_port()
    env = {**os.environ, "TGI_URL": f"http://127.0.0.1:{nothing_there}"}
    command = [str(script), "--config", str(REPOSITORY / "config.yaml"), "--port", str(port), "--log-level", "error"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = None
        deadline = time.monotonic() + 600  # a machine's first start converts the GGUF file (about 30 s here)
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{url}/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1].decode()
        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert ready.json() == {
            "status": "ready",
            "models": {"smollm2-135m-instruct": "loaded", "llama-2-7b-chat": "unavailable"},
        }

        # The README's first curl command, then the same request to the model that has no TGI behind it.
        question = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12}
        answer = httpx.post(f"{url}/v1/chat/completions", json={"model": "local", **question}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"].strip()
        unreachable = httpx.post(f"{url}/v1/chat/completions", json={"model": "llama2", **question}, timeout=120)
        assert unreachable.status_code == 502
        assert unreachable.json()["error"]["code"] == "upstream_unreachable"
    finally:
        process.terminate()
        process.communicate(timeout=30)  # waits, and closes the stderr pipe
