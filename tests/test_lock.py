"""The lock files and what is installed: the suite runs on exactly what `requirements.lock` pins (or, under
`scripts/test --floor`, `requirements-floor.lock`; under `--latest`, within pyproject.toml's ranges), and the
locks still satisfy pyproject.toml (a range edited without `scripts/lock` fails here)."""

from __future__ import annotations

import importlib.metadata
import os
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.locks import ROOT, pins, public

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIRECT = [
    Requirement(spec)
    for spec in [
        *PROJECT["dependencies"],
        *PROJECT["optional-dependencies"]["test"],
        *PROJECT["optional-dependencies"]["local"],
    ]
]
# Set by scripts/test: the lock this environment was installed from, or "" under --latest.
UNDER_TEST = os.environ.get("PROXY_TEST_LOCK", "requirements.lock")


def installed() -> dict[str, str]:
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-floor.lock"])
def test_the_lock_satisfies_pyproject(lock: str) -> None:
    pinned = pins(ROOT / lock)
    for requirement in DIRECT:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} has no {name}: run scripts/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{lock}: {name} {pinned[name]}"


def test_the_floor_lock_holds_transformers_at_the_lowest_release_allowed() -> None:
    (transformers,) = [r for r in DIRECT if r.name == "transformers"]
    (floor,) = [s.version for s in transformers.specifier if s.operator == ">="]
    assert pins(ROOT / "requirements-floor.lock")["transformers"] == public(floor)


def test_this_environment_is_what_was_locked() -> None:
    have = installed()
    if UNDER_TEST:
        pinned = pins(ROOT / UNDER_TEST)
        wrong = {
            name: (have[name], str(version))
            for name, version in pinned.items()
            if name in have and public(have[name]) != version
        }
        assert wrong == {}, f"installed (have, locked) differ from {UNDER_TEST}"
        missing = [name for name in pinned if name not in have and name in {canonicalize_name(r.name) for r in DIRECT}]
        assert missing == []
    for requirement in DIRECT:  # every mode: within pyproject.toml's ranges
        version = have[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(public(version), prereleases=True), f"{requirement.name} {version}"
