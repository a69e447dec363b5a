"""Shared fixtures: a fake TGI built from recorded fixtures, the proxy in-process or on a real socket, and
OpenAI SDK clients pointed at it. Apps are built per test from settings, never imported as globals."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import Settings
from tests.support import MODEL, Live, SettingsFactory


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: no test may see the developer's proxy variables or ours."""
    for name in list(os.environ):
        if name.startswith("HF_OPENAI_PROXY_") or name.lower() in {"http_proxy", "https_proxy", "all_proxy"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def fake_tgi() -> FakeTGI:
    return FakeTGI()


@pytest.fixture
def upstream_options() -> dict[str, Any]:
    """Extra `upstream` settings for `make_settings`; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def make_settings(upstream_options: dict[str, Any]) -> SettingsFactory:
    def build(url: str = "http://tgi.test", *, server: dict[str, Any] | None = None, **model: Any) -> Settings:
        config: dict[str, Any] = {
            "name": MODEL,
            "aliases": ["test-alias"],
            "upstream": {"kind": "tgi", "url": url, **upstream_options},
            "chat_template": "chatml",
            **model,
        }
        return Settings.model_validate({"models": [config], "server": server or {}})

    return build


@pytest.fixture
async def client(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy in-process, over the fake TGI in-process: fast, and sees whole stream transcripts."""
    app = create_app(make_settings(), upstream_transport=httpx.ASGITransport(app=fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        yield http


@pytest.fixture
def live(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> Iterator[Live]:
    with LoopbackServer(fake_tgi.app) as upstream:
        with LoopbackServer(create_app(make_settings(upstream.url, server={"ping_seconds": 0.5}))) as proxy:
            live = Live(proxy.url, fake_tgi)
            yield live
            for client in live.clients:
                client.close()
