"""The embedded model's figures in the README: time from start to loaded, time to first token, tokens/s.

    .venv/bin/python -m scripts.local_figures                   # the shipped config.yaml, the user's cache
    XDG_CACHE_HOME=$(mktemp -d) .venv/bin/python -m scripts.local_figures   # a first start: converts the GGUF

Starts the console script on a free port, waits for `/v1/models` to say `loaded`, then streams one greedy
completion of `--tokens` tokens and prints the figures. Nothing here is asserted: it measures.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--model", default="local")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(sys.executable).with_name("hf-openai-proxy")
    started = time.monotonic()
    command = [str(script), "--config", args.config, "--port", str(port), "--log-level", "error"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL) as server:
        try:
            url = f"http://127.0.0.1:{port}"
            loaded = _wait_loaded(url, args.model, server)
            print(f"start to loaded: {loaded - started:.1f} s")  # noqa: T201
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            asked = time.monotonic()
            first = None
            usage = None
            stream = client.completions.create(
                model=args.model,
                prompt="1, 2, 3, 4, 5,",  # greedy SmolLM2 keeps counting: no early end
                max_tokens=args.tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].text:
                    first = time.monotonic()
                usage = chunk.usage or usage
            done = time.monotonic()
            assert first is not None and usage is not None
            tokens = usage.completion_tokens
            print(f"first token: {first - asked:.2f} s")  # noqa: T201
            rate = (tokens - 1) / (done - first)
            print(f"{tokens} tokens, {rate:.1f} tokens/s after the first")  # noqa: T201
        finally:
            server.terminate()


def _wait_loaded(url: str, model: str, server: subprocess.Popen[bytes]) -> float:
    while server.poll() is None:
        try:
            card = httpx.get(f"{url}/v1/models/{model}", timeout=5).json()
            if card.get("status") == "loaded":
                return time.monotonic()
            if card.get("status") == "unavailable":
                raise SystemExit(f"the model is unavailable: {card}")
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server exited")


if __name__ == "__main__":
    main()
