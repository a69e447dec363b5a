"""The models this proxy serves: configured names and aliases, each bound to its upstream and template."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.config import ConfigError, ModelConfig, Settings
from server.errors import ModelNotFound
from server.prompts import ChatTemplate, TemplateLoadError, load_chat_template
from server.upstream.admission import Gate
from server.upstream.base import InProcessModel, ModelState
from server.upstream.connect import Transport, connect
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
    shipped: ShippedTemplates | None = None  # the template the model itself ships (kind local)

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
        if self.template is None and self.shipped is not None:
            return await self.shipped.template()
        return self.template


class ShippedTemplates:
    """The chat template a model held in this process ships, built with `server.prompts` once it has loaded.

    A template that cannot be used is reported once; the model then serves /v1/completions only."""

    def __init__(self, model: InProcessModel, name: str) -> None:
        self._model = model
        self._name = name
        self._template: ChatTemplate | None = None
        self._built = False

    async def template(self) -> ChatTemplate | None:
        if not self._built:
            shipped = await self._model.shipped_template()  # waits for the model; a load failure raises
            self._built = True
            if shipped is not None:
                try:
                    self._template = load_chat_template(
                        shipped.source, base_dir=Path("."), bos_token=shipped.bos_token, eos_token=shipped.eos_token
                    )
                except TemplateLoadError as exc:
                    logger.warning("the chat template of the local model %s cannot be used: %s", self._name, exc)
        return self._template


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
        shipped = None
        if isinstance(backend, Translated) and backend.in_process is not None:
            shipped = ShippedTemplates(backend.in_process, config.name)
        models.append(ServedModel(config.name, config, backend, template, created, gate, shipped))
    return ModelRegistry(models)
