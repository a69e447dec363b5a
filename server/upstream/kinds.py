"""What a served model's backend is, said explicitly: the request path dispatches on this, never on which
methods an upstream object happens to have."""

from __future__ import annotations

from dataclasses import dataclass

from server.upstream.base import InProcessModel, Relay, Upstream

__all__ = ["Backend", "Relayed", "Translated"]


@dataclass(frozen=True, slots=True)
class Translated:
    """A backend the proxy drives with TGI's parameters and events (kinds `tgi`, `hf-inference`, `local`); the
    OpenAI request is translated (`server.api.openai.translate`)."""

    upstream: Upstream
    in_process: InProcessModel | None = None  # the model itself, when this process holds it (kind `local`)

    async def healthy(self) -> bool:
        return await self.upstream.healthy()

    async def aclose(self) -> None:
        await self.upstream.aclose()


@dataclass(frozen=True, slots=True)
class Relayed:
    """An OpenAI-style backend (kind `openai`): the client's body goes through, the answer is normalised
    (`server.generation.relay`)."""

    relay: Relay

    async def healthy(self) -> bool:
        return await self.relay.healthy()

    async def aclose(self) -> None:
        await self.relay.aclose()


Backend = Translated | Relayed
