"""The models this proxy serves: configured names and aliases, each bound to its upstream and template."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.config import ConfigError, ModelConfig, Settings
from server.errors import ModelNotFound
from server.prompts import ChatTemplate, TemplateLoadError, load_chat_template
from server.upstream import InProcessModel, ModelState, Transport, Upstream, connect

__all__ = ["ModelRegistry", "ServedModel", "build_registry"]

OWNER = "hf-openai-proxy"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    config: ModelConfig
    upstream: Upstream
    template: ChatTemplate | None
    created: int

    def card(self) -> dict[str, Any]:
        """The OpenAI `Model` object; a model held in this process also says whether it is loaded."""
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created, "owned_by": OWNER}
        if self.status is not None:
            card["status"] = self.status
        return card

    @property
    def status(self) -> ModelState | None:
        """`loading`, `loaded` or `unavailable` for a model held in this process (kind local), else None."""
        return self.upstream.state() if isinstance(self.upstream, InProcessModel) else None

    async def chat_template(self) -> ChatTemplate | None:
        """The configured template, else the one the model itself ships (kind local)."""
        if self.template is None and isinstance(self.upstream, InProcessModel):
            return await self.upstream.chat_template()
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


def build_registry(settings: Settings, *, transport: Transport | None = None) -> ModelRegistry:
    """Load every template and open every upstream client; any problem is a `ConfigError` naming the field."""
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
        upstream = connect(config.upstream, transport=transport, where=f"{where}.upstream")
        if template is None and not isinstance(upstream, InProcessModel):
            logger.warning("model %s has no chat_template: it serves /v1/completions only", config.name)
        models.append(ServedModel(config.name, config, upstream, template, created))
    return ModelRegistry(models)
