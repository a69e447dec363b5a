"""`server.api_keys` and `/ready`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import Settings
from tests.support import MODEL, SettingsFactory

pytestmark = pytest.mark.sockets

MESSAGES = [{"role": "user", "content": "hi"}]
CHATML = {"chat_template": "chatml"}


@pytest.fixture
async def locked(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(server={"api_keys": ["sk-right", "sk-other"]})
    app = create_app(settings, upstream_transport=httpx.ASGITransport(fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        yield http


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", "sk-right", "Basic sk-right", "Bearer "])
async def test_missing_or_wrong_key_is_401(locked: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    for response in (
        await locked.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}, headers=headers),
        await locked.get("/v1/models", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "message": response.json()["error"]["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        assert response.headers["x-request-id"]
        assert "sk-right" not in response.text


async def test_right_key_open_paths_and_preflight(locked: httpx.AsyncClient) -> None:
    for key in ("sk-right", "sk-other"):
        response = await locked.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
    assert (await locked.get("/health")).status_code == 200
    assert (await locked.request("OPTIONS", "/v1/models")).status_code != 401


def test_sdk_sees_authentication_error(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    with LoopbackServer(fake_tgi.app) as upstream:
        app = create_app(make_settings(upstream.url, server={"api_keys": ["sk-right"]}))
        with LoopbackServer(app) as proxy:
            with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-wrong", max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError) as failure:
                    bad.models.list()
            assert failure.value.code == "invalid_api_key"
            with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-right", max_retries=0) as good:
                assert good.completions.create(model=MODEL, prompt="x", max_tokens=1).choices


async def poll_ready(http: httpx.AsyncClient, status: int) -> httpx.Response:
    """`/ready` until it answers `status` (the checks run in the background, every 0.05 s here)."""
    for _ in range(200):
        response = await http.get("/ready")
        if response.status_code == status:
            return response
        await asyncio.sleep(0.02)
    raise AssertionError(f"/ready never answered {status}: {response.text}")


async def test_ready_reflects_upstream_health(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    with LoopbackServer(fake_tgi.app) as upstream:
        with LoopbackServer(create_app(make_settings(upstream.url, server={"ready_interval": 0.05}))) as proxy:
            async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
                response = await poll_ready(http, 200)
                assert response.json() == {"status": "ready", "models": {MODEL: "ok"}}
                fake_tgi.healthy = False
                response = await poll_ready(http, 503)
                assert response.json() == {"status": "unavailable", "models": {MODEL: "unavailable"}}
                assert (await http.get("/health")).status_code == 200  # liveness does not depend on the upstream


async def test_ready_when_upstream_is_down(make_settings: SettingsFactory) -> None:
    with LoopbackServer(create_app(make_settings("http://127.0.0.1:9", server={"ready_interval": 0.05}))) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
            await poll_ready(http, 503)
            response = await http.get("/ready")
            assert response.json()["models"] == {MODEL: "unavailable"}


async def test_ready_never_waits_for_a_hanging_upstream(make_settings: SettingsFactory) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = make_settings(url, upstream={"kind": "tgi", "url": url, "connect_timeout": 30})
        with LoopbackServer(create_app(settings)) as proxy:
            async with httpx.AsyncClient(base_url=proxy.url, timeout=2) as http:
                for _ in range(3):  # each answer comes at once, from the cache, while the check hangs
                    response = await http.get("/ready")
                    assert response.status_code == 503 and response.json()["status"] == "starting"


def two_models(up: str, *, ready_when: object = None) -> Settings:
    """`up` served by a healthy TGI, `down` by nothing (a closed port)."""
    server: dict[str, object] = {"ready_interval": 0.05}
    if ready_when is not None:
        server["ready_when"] = ready_when
    return Settings.model_validate(
        {
            "models": [
                {"name": "up", "aliases": ["up-alias"], "upstream": {"kind": "tgi", "url": up}, **CHATML},
                {"name": "down", "upstream": {"kind": "tgi", "url": "http://127.0.0.1:9"}, **CHATML},
            ],
            "server": server,
        }
    )


@pytest.mark.parametrize(
    ("ready_when", "status"),
    [(None, 200), ("any", 200), ("all", 503), (["down"], 503), (["up-alias"], 200), (["up", "down"], 503)],
)
async def test_ready_when_chooses_which_models_must_serve(fake_tgi: FakeTGI, ready_when: object, status: int) -> None:
    """By default one model that can serve makes the instance ready (the shipped config: the embedded model
    serves while its TGI model has no TGI); `all` or a list of names asks for more. The body always shows each
    model's state, so a dead upstream stays visible to monitoring."""
    with LoopbackServer(fake_tgi.app) as upstream:
        with LoopbackServer(create_app(two_models(upstream.url, ready_when=ready_when))) as proxy:
            async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
                for _ in range(200):  # until both checks have a result
                    response = await http.get("/ready")
                    if response.json()["models"] == {"up": "ok", "down": "unavailable"}:
                        break
                    await asyncio.sleep(0.02)
                assert response.json()["models"] == {"up": "ok", "down": "unavailable"}
                assert response.status_code == status
                assert response.json()["status"] == ("ready" if status == 200 else "unavailable")


def test_ready_when_names_only_configured_models() -> None:
    with pytest.raises(ValueError, match=r"`server.ready_when` names 'nope', not a configured model"):
        two_models("http://127.0.0.1:9", ready_when=["nope"])
    with pytest.raises(ValueError, match="ready_when"):
        two_models("http://127.0.0.1:9", ready_when="most")
