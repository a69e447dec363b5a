"""API keys from the config, an environment variable and a file; which paths are open."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import ConfigError, Settings, load_settings
from tests.support import MODEL, SettingsFactory

CONFIG = """\
models:
  - name: test-model
    upstream: {kind: tgi, url: "http://tgi.test"}
server:
  api_keys: [sk-inline]
"""


def keys_of(settings: Settings) -> list[str]:
    return [key.get_secret_value() for key in settings.server.api_keys]


def write_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + extra)
    return path


def test_keys_from_env_and_file_join_the_inline_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_KEYS", "sk-env-1, sk-env-2\nsk-env-3")
    (tmp_path / "keys.txt").write_text("# one key per line\nsk-file-1\n\n  sk-file-2  \n")
    config = write_config(tmp_path, "  api_keys_env: PROXY_KEYS\n  api_keys_file: keys.txt\n")
    settings = load_settings(config)
    assert keys_of(settings) == ["sk-inline", "sk-env-1", "sk-env-2", "sk-env-3", "sk-file-1", "sk-file-2"]


def test_key_file_by_environment_setting_and_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret").write_text("sk-docker-secret\n")
    monkeypatch.setenv("HF_OPENAI_PROXY_SERVER__API_KEYS_FILE", str(tmp_path / "secret"))
    assert keys_of(load_settings(None)) == ["sk-docker-secret"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  api_keys_env: NOT_SET_ANYWHERE\n", "server: `api_keys_env` names NOT_SET_ANYWHERE, an environment"),
        ("  api_keys_file: missing.txt\n", "server: `api_keys_file` {dir}/missing.txt cannot be read (No such file"),
        ("  api_keys_file: empty.txt\n", "server: `api_keys_file` {dir}/empty.txt holds no key"),
    ],
)
def test_key_sources_that_give_no_key_stop_the_start(tmp_path: Path, extra: str, expected: str) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    config = write_config(tmp_path, extra)
    with pytest.raises(ConfigError) as failure:
        load_settings(config)
    assert str(failure.value).startswith(f"config error in {config}: {expected.format(dir=tmp_path)}")


def test_an_empty_inline_key_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("[sk-inline]", "['${UNSET_KEY:-}']"))
    with pytest.raises(ConfigError, match=r"server\.api_keys: an empty key would let in"):
        load_settings(config)


def test_empty_key_environment_variable_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_KEYS", " , ")
    with pytest.raises(ConfigError, match="PROXY_KEYS, an environment variable that is not set or holds no key"):
        load_settings(write_config(tmp_path, "  api_keys_env: PROXY_KEYS\n"))


@pytest.mark.sockets
def test_keys_from_a_file_guard_a_live_server(
    tmp_path: Path, fake_tgi: FakeTGI, make_settings: SettingsFactory
) -> None:
    (tmp_path / "keys").write_text("sk-from-file\n")
    with LoopbackServer(fake_tgi.app) as upstream:
        settings = make_settings(upstream.url, server={"api_keys_file": str(tmp_path / "keys")})
        with LoopbackServer(create_app(settings)) as proxy:
            with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-wrong", max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError) as failure:
                    bad.completions.create(model=MODEL, prompt="x", max_tokens=1)
            assert failure.value.code == "invalid_api_key"
            assert failure.value.response.headers["x-request-id"]
            with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-from-file", max_retries=0) as good:
                assert good.completions.create(model=MODEL, prompt="x", max_tokens=1).choices
            missing = httpx.post(f"{proxy.url}/v1/completions", json={"model": MODEL, "prompt": "x"})
            assert missing.status_code == 401
            assert missing.json()["error"] == {
                "message": missing.json()["error"]["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }


async def locked_status(app_settings: Settings, fake_tgi: FakeTGI, path: str) -> int:
    app = create_app(app_settings, upstream_transport=httpx.ASGITransport(fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        return (await http.get(path)).status_code


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_health_ready_and_metrics_are_open_by_default(
    fake_tgi: FakeTGI, make_settings: SettingsFactory, path: str
) -> None:
    # `/ready` answers 503 "starting" here: in-process, without the lifespan, no background check has run.
    expected = 503 if path == "/ready" else 200
    assert await locked_status(make_settings(server={"api_keys": ["sk-k"]}), fake_tgi, path) == expected


async def test_open_paths_are_configurable(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    closed = make_settings(server={"api_keys": ["sk-k"], "open_paths": ["/v1/models"]})
    assert await locked_status(closed, fake_tgi, "/metrics") == 401
    assert await locked_status(closed, fake_tgi, "/health") == 401
    assert await locked_status(closed, fake_tgi, "/v1/models") == 200


def test_open_paths_must_be_paths(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValueError, match="open_paths"):
        make_settings(server={"open_paths": ["health"]})
