"""The documented interface from the outside: the console script started as a user would, configured by a
YAML file with `${VAR}` interpolation, driven by `curl -N` and the OpenAI SDK over a real socket."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from tests.support import free_port

pytestmark = pytest.mark.sockets

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


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, FakeTGI]]:
    with running_proxy(tmp_path) as started:
        yield started


@contextlib.contextmanager
def running_proxy(tmp_path: Path, *flags: str) -> Iterator[tuple[str, FakeTGI]]:
    fake = FakeTGI()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    script = Path(sys.executable).with_name("hf-openai-proxy")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "server"]
    port = free_port()
    with LoopbackServer(fake.app) as upstream:
        env = {**os.environ, "TGI_URL": upstream.url}
        process = subprocess.Popen(
            [*command, "--config", str(config), "--port", str(port), "--log-level", "WARNING", *flags],
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
            assert process.poll() is None, "the proxy exited while serving"
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


def test_the_readmes_easyllm_replacement(proxy: tuple[str, FakeTGI]) -> None:
    """README, "Coming from EasyLLM": the openai SDK call that replaces `Completion.create(..., stream=True)` with
    `prompt_builder = "llama2"` sends the llama2 format to TGI, with the same sampling, and streams the text."""
    url, fake = proxy
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with client:
        stream = client.chat.completions.create(
            model="llama2",
            messages=[{"role": "user", "content": "What is the meaning of life?"}],
            temperature=0.9,
            top_p=0.6,
            max_tokens=256,
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip()
    sent = fake.requests_to("/generate_stream")[-1].body
    assert sent["inputs"] == "[INST] What is the meaning of life? [/INST]"  # TGI's tokenizer adds the `<s>`
    assert (sent["parameters"]["temperature"], sent["parameters"]["top_p"]) == (0.9, 0.6)
    assert sent["parameters"]["max_new_tokens"] == 256


def test_workers_share_the_port(tmp_path: Path) -> None:
    with running_proxy(tmp_path, "--workers", "2") as (url, fake):
        supervisor = _listening_process(url)
        workers = [pid for pid in _children(supervisor) if "spawn_main" in " ".join(_cmdline(Path(f"/proc/{pid}")))]
        assert len(workers) == 2, _children(supervisor)
        with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
            for _ in range(6):
                stream = client.chat.completions.create(
                    model="llama2", messages=[{"role": "user", "content": "x"}], stream=True
                )
                assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == " 1. "
        assert len(fake.requests_to("/generate_stream")) == 6


def _listening_process(url: str) -> int:
    """The pid whose children are the workers: the one started by the test (uvicorn's supervisor)."""
    port = int(url.rsplit(":", 1)[1])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cmdline(entry).count(str(port)) and "--workers" in _cmdline(entry):
            return int(entry.name)
    raise AssertionError("no process has the proxy's command line")


def _cmdline(entry: Path) -> list[str]:
    try:
        return (entry / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def test_the_heap_is_settled_before_serving() -> None:
    """`settle_heap` (run by `main` and by each worker) hides long-lived objects from the cycle collector;
    in a child process, as it changes the whole interpreter."""
    probe = "import gc; from server.cli import settle_heap; settle_heap(); print(gc.get_freeze_count())"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert int(result.stdout) > 10_000
