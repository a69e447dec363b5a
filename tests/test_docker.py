"""The Dockerfile and docker/compose.yaml without a Docker engine: the Dockerfile is linted with hadolint and its
steps are replayed in a fresh virtualenv (ENV, WORKDIR, COPY, RUN, then the HEALTHCHECK and CMD against a fake
TGI); the compose file is checked for the wiring the README promises.

The replay maps the image's filesystem into a temporary folder and the image's Python onto a new venv. It runs
every RUN as written except the user-account one (root-only and the host's business), lets pip use the
machine's cache (the image keeps none), and binds 127.0.0.1 instead of the image's 0.0.0.0.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.utils import canonicalize_name

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.config import load_settings
from tests.locks import pins, public
from tests.support import free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
ACCOUNT_COMMANDS = ("groupadd", "useradd")


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, arguments = (logical + line).strip().partition(" ")
        logical = ""
        yield keyword.upper(), arguments.strip()


def env_pairs(arguments: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(arguments))


@dataclass
class Image:
    """What replaying the Dockerfile left: the environment, working folder and the commands to start."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path = Path("/")
    user: str = "root"
    exposed: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def path(self, inside: str) -> Path:
        return self.root / (self.workdir / inside).relative_to("/")


def replay(dockerfile: Path, root: Path, python_bin: Path) -> Image:
    image = Image(root)
    for keyword, arguments in instructions(dockerfile.read_text()):
        if keyword == "ENV":
            image.env.update(env_pairs(arguments))
        elif keyword == "WORKDIR":
            image.workdir = image.workdir / arguments
            image.path(".").mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = shlex.split(arguments)
            for source in sources:
                origin, destination = ROOT / source, image.path(target)
                if origin.is_dir():
                    shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(origin, destination)
        elif keyword == "RUN":
            if all(part.strip().startswith(ACCOUNT_COMMANDS) for part in arguments.split("&&")):
                image.skipped.append(arguments)
                continue
            env = {**os.environ, **image.env, "PATH": f"{python_bin}:{os.environ['PATH']}"}
            env.pop("PIP_NO_CACHE_DIR")
            result = subprocess.run(
                ["sh", "-ec", arguments], cwd=image.path("."), env=env, capture_output=True, text=True, timeout=600
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout}\n{result.stderr}"
        elif keyword == "USER":
            image.user = arguments
        elif keyword == "EXPOSE":
            image.exposed.append(arguments)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = json.loads(arguments[arguments.index("CMD ") + 4 :])
        elif keyword == "CMD":
            image.cmd = json.loads(arguments)
        else:
            assert keyword == "FROM", f"the replay does not know {keyword}"
    return image


def test_dockerfile_lints_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_layout() -> None:
    steps = list(instructions(DOCKERFILE.read_text()))
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.") and steps[0][1].endswith("-slim")
    order = [f"{keyword} {arguments.split()[0]}" for keyword, arguments in steps]
    # Dependencies are installed from pyproject.toml alone, before the source is copied in.
    assert order.index("COPY pyproject.toml") < order.index("RUN mkdir") < order.index("COPY server/")
    assert ("USER", "10001:10001") in steps and ("EXPOSE", "8000") in steps
    copied = {arguments.split()[0].rstrip("/") for keyword, arguments in steps if keyword == "COPY"}
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    assert copied <= allowed, copied - allowed  # .dockerignore excludes everything else


@pytest.fixture
def fake_upstream() -> Iterator[str]:
    with LoopbackServer(FakeTGI().app) as upstream:
        yield upstream.url


def test_dockerfile_installs_and_starts_in_a_fresh_venv(
    tmp_path: Path, fake_upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)  # the image's python, without this test environment's packages
    image = replay(DOCKERFILE, tmp_path / "image", environment / "bin")
    assert image.skipped and image.user != "root"
    listed = subprocess.run(
        [str(environment / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    in_venv = {canonicalize_name(item["name"]): public(item["version"]) for item in json.loads(listed.stdout)}
    locked = pins(ROOT / "requirements.lock")
    seeded = {"pip", "setuptools"}  # the interpreter's own, as in the image's python:3.12-slim; pip is pinned by RUN
    differ = {
        name: str(version)
        for name, version in in_venv.items()
        if name in locked and name not in seeded and locked[name] != version
    }
    assert differ == {}, "the image installs other versions than requirements.lock pins"
    assert {"fastapi", "uvicorn", "httpx", "pydantic", "sse-starlette"} <= in_venv.keys()
    assert image.cmd[:3] == ["python", "-m", "server"]
    for name, value in {**image.env, "TGI_URL": fake_upstream}.items():
        monkeypatch.setenv(name, value)
    in_image = load_settings(image.path(image.cmd[image.cmd.index("--config") + 1]))
    assert (in_image.server.host, in_image.server.port) == ("0.0.0.0", 8000)  # the image's env beats the file

    port = str(free_port())
    env = {
        **os.environ,
        **image.env,
        "PATH": f"{environment / 'bin'}:{os.environ['PATH']}",
        "HF_OPENAI_PROXY_SERVER__HOST": "127.0.0.1",
        "HF_OPENAI_PROXY_SERVER__PORT": port,
        "TGI_URL": fake_upstream,  # the shipped config.yaml reads it
    }
    process = subprocess.Popen(image.cmd, cwd=image.path("."), env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(image.healthcheck, env=env, capture_output=True, timeout=10).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.2)
        body: dict[str, Any] = {"model": "llama2", "messages": [{"role": "user", "content": "Count"}], "max_tokens": 3}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10).json()
        assert answer["choices"][0]["message"]["content"] == " 1."
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "Traceback" not in stderr


def test_compose_wires_tgi_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    tgi, proxy = compose["services"]["tgi"], compose["services"]["proxy"]
    assert tgi["image"].startswith("ghcr.io/huggingface/text-generation-inference:") and tgi["image"].endswith("-cpu")
    assert any(flag.startswith("--model-id=") for flag in tgi["command"])
    assert "/health" in " ".join(tgi["healthcheck"]["test"])
    assert proxy["depends_on"] == {"tgi": {"condition": "service_healthy"}}
    assert (COMPOSE.parent / proxy["build"]["context"] / proxy["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert proxy["environment"]["TGI_URL"] == "http://tgi:80"  # TGI's images listen on port 80
    assert proxy["ports"] == ["8000:8000"]
    mount, target, _ = proxy["volumes"][0].split(":")
    assert target == "/app/config.yaml"  # where the Dockerfile's CMD reads it (WORKDIR /app)
    monkeypatch.setenv("TGI_URL", proxy["environment"]["TGI_URL"])
    settings = load_settings(COMPOSE.parent / mount)
    assert settings.models[0].upstream.addresses == ["http://tgi:80"]
    assert set(compose["volumes"]) == {volume.split(":")[0] for volume in tgi["volumes"]}
