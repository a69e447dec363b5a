"""LiteLLM's proxy as a benchmark target, in a virtualenv of its own (`bench/.venvs/litellm`, git-ignored).

Installed once per machine from `bench/litellm-requirements.txt` (a stamp holding the file's hash says when to
install again). Configured as docs/benchmark.md says: one worker, no database, telemetry and verbose logging off,
calling the fake TGI's OpenAI-style `/v1/chat/completions`.

Through LiteLLM's OpenAI-compatible provider, not its `huggingface/` one: both call that same route, but here,
with no internet, the Hugging Face provider stalled about 0.4 s on every request and for seconds now and then
(2.6 requests/s one at a time, against 100 with the other provider), which would have measured the sandbox,
not LiteLLM. The OpenAI-compatible provider is also what LiteLLM documents for TGI's Messages API.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["litellm_process"]

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "litellm-requirements.txt"
VENV = HERE / ".venvs" / "litellm"

CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench  # OpenAI-compatible provider: TGI's /v1/chat/completions (see the docstring)
      api_base: {fake_url}/v1
      api_key: bench
litellm_settings:
  telemetry: false
  set_verbose: false
  drop_params: true
general_settings:
  disable_spend_logs: true
  master_key: {key}  # required to start; the load generator sends it
"""
# No DATABASE_URL: no database. The model price map ships with the package; fetching it needs the internet.
KEY = "sk-bench-0123456789abcdef"  # not a secret: it guards a throwaway server on loopback
ENVIRONMENT = {"LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


def litellm_process(fake_url: str, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start LiteLLM's proxy on 127.0.0.1:`port` (installed first if needed)."""
    python = _installed()
    config = workdir / "litellm.yaml"
    config.write_text(CONFIG.format(fake_url=fake_url, key=KEY))
    argv = [str(python.with_name("litellm")), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--num_workers", "1"], {**os.environ, **ENVIRONMENT}


def _installed() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.is_file() and stamp.read_text() == digest:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    sys.stderr.write(f"installing LiteLLM into {VENV} (once; a minute or two)\n")
    venv.create(VENV, with_pip=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return python
