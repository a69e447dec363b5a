"""The documented interface from the outside: the console script started as a user would, configured by a
YAML file with `${VAR}` interpolation, driven by `curl -N` and the OpenAI SDK over a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fake_tgi import FakeTGI
from tests.loopback import LoopbackServer

CONFIG = """\
models:
  - name: llama-2-7b-chat
    aliases: [llama2]
    upstream:
      kind: tgi
      url: ${TGI_URL}
      token: ${HF_TOKEN:-}
    chat_template: llama2
    stop: ["</s>"]
    defaults: {max_tokens: 4}
server:
  api_keys: []
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, FakeTGI]]:
    fake = FakeTGI()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    script = Path(sys.executable).with_name("hf-openai-proxy")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "server"]
    port = free_port()
    with LoopbackServer(fake.app) as upstream:
        env = {**os.environ, "TGI_URL": upstream.url}
        process = subprocess.Popen(
            [*command, "--config", str(config), "--port", str(port), "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                process.kill()
                pytest.fail(f"the proxy did not start: {process.communicate()[1].decode()}")
            yield url, fake
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    assert b"Traceback" not in stderr


def test_curl_streams_sse(proxy: tuple[str, FakeTGI]) -> None:
    url, fake = proxy
    body = '{"model": "llama2", "stream": true, "messages": [{"role": "user", "content": "Count"}]}'
    result = subprocess.run(
        ["curl", "-sN", f"{url}/v1/chat/completions", "-H", "content-type: application/json", "-d", body],
        capture_output=True,
        timeout=30,
        check=True,
    )
    lines = result.stdout.decode().split("\n\n")
    assert lines[-2] == "data: [DONE]" and lines[-1] == ""
    assert all(line.startswith("data: {") for line in lines[:-2])
    assert fake.requests_to("/generate_stream")[-1].body["inputs"] == "[INST] Count [/INST]"


def test_sdk_against_the_console_script(proxy: tuple[str, FakeTGI]) -> None:
    url, fake = proxy
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        answer = client.chat.completions.create(model="llama-2-7b-chat", messages=[{"role": "user", "content": "x"}])
        assert answer.choices[0].message.content == " 1. "  # `defaults: {max_tokens: 4}` from the file
        assert answer.model == "llama-2-7b-chat"
        completion = client.completions.create(model="llama2", prompt="Count:", max_tokens=3)
        assert completion.choices[0].text == " 1."
    stops = fake.requests_to("/generate")[0].body["parameters"]["stop"]
    assert "</s>" in stops
