"""The application's state, typed: what the factory builds once and every handler reads."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from server.config import Settings
from server.ops.readiness import Readiness
from server.registry import ModelRegistry

__all__ = ["AppState", "install_state", "state_of"]


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    models: ModelRegistry
    readiness: Readiness


def install_state(app: Starlette, state: AppState) -> None:
    app.state.proxy = state


def state_of(app: Starlette) -> AppState:
    """The state `install_state` put on `app`."""
    state: AppState = app.state.proxy
    return state
