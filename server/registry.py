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
from server.upstream import Gate, ModelState, Transport, connect
from server.upstream.base import InProcessModel
from server.upstream.kinds import Backend, Translated

__all__ = ["ModelRegistry", "ServedModel", "build_registry"]

OWNER = "hf-openai-proxy"

logger = logging.getLogger(__name__)

UpstreamObserver = Callable[[str, Backend], Backend]  # (model name, backend) -> what to use


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    config: ModelConfig
    backend: Backend  # translated (TGI's parameters) or relayed (an OpenAI-style upstream), by kind
    template: ChatTemplate | None
    created: int
    gate: Gate  # this model's share of upstream capacity (`server.upstream.admission`)

    def card(self) -> dict[str, Any]:
        """The OpenAI `Model` object; a model held in this process also says whether it is loaded."""
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created, "owned_by": OWNER}
        if self.status is not None:
            card["status"] = self.status
        return card

    @property
    def status(self) -> ModelState | None:
        """`loading`, `loaded` or `unavailable` for a model held in this process (kind local), else None."""
        in_process = self.in_process
        return in_process.state() if in_process is not None else None

    @property
    def in_process(self) -> InProcessModel | None:
        """The model itself, when this process holds it (kind local)."""
        return self.backend.in_process if isinstance(self.backend, Translated) else None

    async def chat_template(self) -> ChatTemplate | None:
        """The configured template, else the one the model itself ships (kind local)."""
        in_process = self.in_process
        if self.template is None and in_process is not None:
            return await in_process.chat_template()
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
            await model.backend.aclose()


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
        backend = connect(limits, model=config.name, gate=gate, transport=transport, where=f"{where}.upstream")
        if template is None and not (isinstance(backend, Translated) and backend.in_process is not None):
            logger.warning("model %s has no chat_template: it serves /v1/completions only", config.name)
        if observe is not None:
            backend = observe(config.name, backend)
        models.append(ServedModel(config.name, config, backend, template, created, gate))
    return ModelRegistry(models)
