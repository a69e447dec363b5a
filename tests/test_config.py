"""Settings: file < environment < flags, ${VAR} interpolation, and one clear ConfigError naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from server.cli import flag_overrides, parse_args
from server.config import ConfigError, Settings, UpstreamConfig, load_settings, read_config_file
from server.registry import build_registry
from server.upstream.kinds import Relayed, Translated

BASE_MODEL: dict[str, Any] = {
    "name": "llama",
    "aliases": ["l2"],
    "upstream": {"kind": "tgi", "url": "http://tgi.test:8080"},
    "chat_template": "llama2",
}


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's HF_OPENAI_PROXY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("HF_OPENAI_PROXY_"):
            monkeypatch.delenv(name)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def write_config(tmp_path: Path, **top: Any) -> Path:
    data: dict[str, Any] = {"models": [BASE_MODEL], **top}
    return write_yaml(tmp_path / "config.yaml", data)


def model_config(**changes: Any) -> Any:
    return {**BASE_MODEL, **changes}


def config_error(path: Path, overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides)
    return str(info.value)


# --- loading and layering ------------------------------------------------------------------------------


def test_valid_file(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    (model,) = settings.models
    assert model.name == "llama"
    assert model.aliases == ["l2"]
    assert model.upstream.kind == "tgi"
    assert model.upstream.addresses == ["http://tgi.test:8080"]
    assert model.chat_template == "llama2"
    assert settings.base_dir == tmp_path.resolve()


def test_server_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8000
    assert settings.server.log_level == "info"


def test_empty_file_is_no_models(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(path).models == []


def test_layering_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, server={"port": 8001, "host": "0.0.0.0"})
    assert load_settings(path).server.port == 8001

    monkeypatch.setenv("HF_OPENAI_PROXY_SERVER__PORT", "9001")
    settings = load_settings(path)
    assert settings.server.port == 9001
    assert settings.server.host == "0.0.0.0"  # the environment overrides one field, not the section

    settings = load_settings(path, flag_overrides(parse_args(["--port", "9002"])))
    assert settings.server.port == 9002
    assert settings.server.host == "0.0.0.0"


def test_env_without_file_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_OPENAI_PROXY_SERVER__LOG_LEVEL", "debug")
    assert load_settings(write_config(tmp_path)).server.log_level == "debug"


def test_bad_env_value_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_OPENAI_PROXY_SERVER__PORT", "99999")
    assert "server.port" in config_error(write_config(tmp_path))


# --- interpolation -------------------------------------------------------------------------------------


def test_variable_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TGI_HOST", "tgi.internal")
    monkeypatch.setenv("TEST_TGI_TOKEN", "hf_secret")
    model = model_config(upstream={"kind": "tgi", "url": "http://${TEST_TGI_HOST}:8080", "token": "${TEST_TGI_TOKEN}"})
    settings = load_settings(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    upstream = settings.models[0].upstream
    assert upstream.url == "http://tgi.internal:8080"
    assert upstream.token is not None
    assert upstream.token.get_secret_value() == "hf_secret"


def test_variable_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_UNSET_URL", raising=False)
    monkeypatch.delenv("TEST_UNSET_TOKEN", raising=False)
    model = model_config(
        upstream={"kind": "tgi", "url": "${TEST_UNSET_URL:-http://fallback:1}", "token": "${TEST_UNSET_TOKEN:-}"}
    )
    settings = load_settings(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert settings.models[0].upstream.url == "http://fallback:1"
    assert settings.models[0].upstream.token is not None
    assert settings.models[0].upstream.token.get_secret_value() == ""


def test_variable_set_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SET_URL", "http://set:2")
    model = model_config(upstream={"kind": "tgi", "url": "${TEST_SET_URL:-http://fallback:1}"})
    assert read_config_file(write_yaml(tmp_path / "c.yaml", {"models": [model]}))["models"][0]["upstream"] == {
        "kind": "tgi",
        "url": "http://set:2",
    }


def test_interpolation_in_lists_and_non_strings_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_STOP", "<END>")
    data = read_config_file(write_yaml(tmp_path / "c.yaml", {"stop": ["a", "${TEST_STOP}"], "port": 5, "x": None}))
    assert data == {"stop": ["a", "<END>"], "port": 5, "x": None}


def test_undefined_variable_names_field_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_UNDEFINED_VAR", raising=False)
    model = model_config(upstream={"kind": "tgi", "url": "${TEST_UNDEFINED_VAR}"})
    message = config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert "models[0].upstream.url" in message
    assert "TEST_UNDEFINED_VAR" in message


# --- errors naming the field ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = config_error(tmp_path / "nope.yaml")
    assert "nope.yaml" in message
    assert "does not exist" in message


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [\n  - name: x\n", encoding="utf-8")
    assert "bad.yaml" in config_error(path)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    assert "mapping" in config_error(path)


def test_unknown_kind(tmp_path: Path) -> None:
    model = model_config(upstream={"kind": "vllm", "url": "http://x"})
    assert "models[0].upstream.kind" in config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))


def test_missing_url(tmp_path: Path) -> None:
    model = model_config(upstream={"kind": "tgi"})
    message = config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert "models[0].upstream" in message
    assert "url" in message


def test_url_without_scheme(tmp_path: Path) -> None:
    model = model_config(upstream={"kind": "tgi", "url": "tgi.test:8080"})
    assert "models[0].upstream" in config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))


def test_missing_chat_template_is_allowed(tmp_path: Path) -> None:
    # A base model served for /v1/completions only needs no template; chat requests for it get a 400.
    model = {key: value for key, value in BASE_MODEL.items() if key != "chat_template"}
    settings = load_settings(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert settings.models[0].chat_template is None


def test_defaults_values_are_validated(tmp_path: Path) -> None:
    model = model_config(defaults={"max_tokens": "lots"})
    message = config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert "models[0]" in message and "defaults.max_tokens" in message


def test_unknown_top_level_field(tmp_path: Path) -> None:
    assert "modles" in config_error(write_config(tmp_path, modles=[]))


def test_unknown_model_field(tmp_path: Path) -> None:
    model = model_config(temprature=0.5)
    assert "models[0].temprature" in config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))


def test_duplicate_alias(tmp_path: Path) -> None:
    second = model_config(name="other", aliases=["l2"])
    message = config_error(write_yaml(tmp_path / "c.yaml", {"models": [BASE_MODEL, second]}))
    assert "'l2'" in message
    assert "twice" in message


def test_alias_equal_to_another_models_name(tmp_path: Path) -> None:
    second = model_config(name="other", aliases=["llama"])
    assert "'llama'" in config_error(write_yaml(tmp_path / "c.yaml", {"models": [BASE_MODEL, second]}))


def test_unknown_defaults_key(tmp_path: Path) -> None:
    model = model_config(defaults={"max_tokens": 100, "max_tokenz": 5})
    message = config_error(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert "models[0]" in message
    assert "defaults" in message
    assert "max_tokenz" in message


def test_known_defaults_accepted(tmp_path: Path) -> None:
    model = model_config(defaults={"max_tokens": 100, "temperature": 0.2, "top_k": 5})
    settings = load_settings(write_yaml(tmp_path / "c.yaml", {"models": [model]}))
    assert settings.models[0].defaults == {"max_tokens": 100, "temperature": 0.2, "top_k": 5}


def test_bad_server_port(tmp_path: Path) -> None:
    assert "server.port" in config_error(write_config(tmp_path, server={"port": 70000}))


# --- registry ------------------------------------------------------------------------------------------


def test_registry_unknown_template_names_field() -> None:
    settings = Settings.model_validate({"models": [model_config(chat_template="no-such-template")]})
    with pytest.raises(ConfigError) as info:
        build_registry(settings)
    assert "models[0].chat_template" in str(info.value)
    assert "no-such-template" in str(info.value)


async def test_registry_builds_every_http_kind() -> None:
    models = [
        {"name": "gpt", "upstream": {"kind": "openai", "url": "https://api.example"}},
        {"name": "hf", "upstream": {"kind": "hf-inference", "token": "hf_x"}, "chat_template": "llama3"},
        {"name": "tgi", "upstream": {"kind": "tgi", "urls": ["http://a:1", "http://b:2"]}},
    ]
    registry = build_registry(Settings.model_validate({"models": models}))
    try:
        assert isinstance(registry.get("gpt").backend, Relayed)
        assert isinstance(registry.get("hf").backend, Translated)
    finally:
        await registry.aclose()


def test_an_upstream_has_url_or_urls_not_both() -> None:
    with pytest.raises(ValidationError, match="not both"):
        UpstreamConfig.model_validate({"kind": "tgi", "url": "http://a", "urls": ["http://b"]})


async def test_registry_resolves_names_and_aliases() -> None:
    registry = build_registry(Settings.model_validate({"models": [BASE_MODEL]}))
    try:
        assert registry.get("llama") is registry.get("l2")
        assert [model.name for model in registry] == ["llama"]
    finally:
        await registry.aclose()


# --- command line --------------------------------------------------------------------------------------


def test_cli_defaults() -> None:
    args = parse_args([])
    assert args.config == Path("config.yaml")
    assert args.host is None
    assert args.port is None
    assert args.log_level is None
    assert flag_overrides(args) == {}


@pytest.mark.parametrize("level", ["DEBUG", "debug", "Warning", "ERROR", "info"])
def test_log_level_any_case(level: str) -> None:
    args = parse_args(["--log-level", level])
    assert args.log_level == level.lower()
    assert flag_overrides(args) == {"server": {"log_level": level.lower()}}


def test_log_level_unknown_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--log-level", "verbose"])
    assert info.value.code == 2
    assert "--log-level" in capsys.readouterr().err


def test_flag_overrides() -> None:
    args = parse_args(["--config", "/etc/p.yaml", "--host", "0.0.0.0", "--port", "9000"])
    assert args.config == Path("/etc/p.yaml")
    assert flag_overrides(args) == {"server": {"host": "0.0.0.0", "port": 9000}}


def test_flags_override_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, server={"host": "10.0.0.1", "log_level": "error"})
    monkeypatch.setenv("HF_OPENAI_PROXY_SERVER__HOST", "10.0.0.2")
    settings = load_settings(path, flag_overrides(parse_args(["--log-level", "DEBUG"])))
    assert settings.server.host == "10.0.0.2"
    assert settings.server.log_level == "debug"


@pytest.mark.sockets
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    model = model_config(upstream={"kind": "nonsense", "url": "http://x"})
    path = write_yaml(tmp_path / "bad.yaml", {"models": [model]})
    result = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "models[0].upstream.kind" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.sockets
def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "absent.yaml" in result.stderr
