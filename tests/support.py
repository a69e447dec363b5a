"""What test modules share besides fixtures: the test model's name, the settings factory's type, the live
proxy's handle and a free port. Test modules import these from here, never from each other or from conftest."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai

from fakes.tgi import FakeTGI
from server.config import Settings

__all__ = ["MODEL", "Live", "SettingsFactory", "free_port"]

MODEL = "test-model"

SettingsFactory = Callable[..., Settings]


@dataclass
class Live:
    """The proxy and the fake TGI each on a real loopback socket; SDK clients made here are closed at the end."""

    url: str
    fake: FakeTGI
    clients: list[openai.OpenAI] = field(default_factory=list)

    def sdk(self, **kwargs: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="sk-test", max_retries=0, **kwargs)
        self.clients.append(client)
        return client

    def async_sdk(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sk-test", max_retries=0, **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
