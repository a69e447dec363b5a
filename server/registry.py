"""The models this proxy serves: configured names and aliases, each bound to its upstream and template."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from server.config import ConfigError, ModelConfig, Settings
from server.errors import ModelNotFound
from server.prompts import ChatTemplate, TemplateLoadError, load_chat_template
from server.upstream import Gate, InProcessModel, ModelState, Relay, Transport, Upstream, connect

__all__ = ["ModelRegistry", "ServedModel", "build_registry"]

OWNER = "hf-openai-proxy"

logger = logging.getLogger(__name__)

UpstreamObserver = Callable[[str, Upstream | Relay], Upstream | Relay]  # (model name, upstream) -> what to use


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    config: ModelConfig
    upstream: Upstream | Relay  # an OpenAI-style upstream is relayed (`server.generation.relay`), not translated
    template: ChatTemplate | None
    created: int
    gate: Gate  # this model's share of upstream capacity (`server.upstream.admission`)
    in_process: InProcessModel | None = None  # the model itself, when this process holds it (kind local)

    def card(self) -> dict[str, Any]:
        """The OpenAI `Model` object; a model held in this process also says whether it is loaded."""
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created, "owned_by": OWNER}
        if self.status is not None:
            card["status"] = self.status
        return card

    @property
    def status(self) -> ModelState | None:
        """`loading`, `loaded` or `unavailable` for a model held in this process (kind local), else None."""
        return self.in_process.state() if self.in_process is not None else None

    async def chat_template(self) -> ChatTemplate | None:
        """The configured template, else the one the model itself ships (kind local)."""
        if self.template is None and self.in_process is not None:
            return await self.in_process.chat_template()
        return self.template


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = models
        self._by_name = {name: model for model in models for name in (model.name, *model.config.aliases)}

    def get(self, name: str) -> ServedModel:
        try:
            return self._by_name[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models)

    async def aclose(self) -> None:
        for model in self._models:
            await model.upstream.aclose()


def build_registry(
    settings: Settings, *, transport: Transport | None = None, observe: UpstreamObserver | None = None
) -> ModelRegistry:
    """Load every template and open every upstream client; any problem is a `ConfigError` naming the field.
    `observe` wraps each model's upstream (metrics and logs, `server.ops.observed`)."""
    created = int(time.time())
    models = []
    for i, config in enumerate(settings.models):
        where = f"models[{i}]"
        template = None
        if config.chat_template is not None:
            try:
                template = load_chat_template(config.chat_template, base_dir=settings.base_dir)
            except TemplateLoadError as exc:
                raise ConfigError(f"config error at {where}.chat_template: {exc}") from None
        limits = config.upstream
        gate = Gate(
            limit=limits.max_concurrency, queue=limits.max_queue, timeout=limits.queue_timeout, name=config.name
        )
        upstream = connect(limits, model=config.name, gate=gate, transport=transport, where=f"{where}.upstream")
        in_process = upstream if isinstance(upstream, InProcessModel) else None
        if template is None and in_process is None:
            logger.warning("model %s has no chat_template: it serves /v1/completions only", config.name)
        if observe is not None:
            upstream = observe(config.name, upstream)
        models.append(ServedModel(config.name, config, upstream, template, created, gate, in_process))
    return ModelRegistry(models)
