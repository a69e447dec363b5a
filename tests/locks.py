"""Reading the lock files `scripts/lock` writes (uv's requirements format: `name==version ; marker` lines)."""

from __future__ import annotations

from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]


def pins(lock: Path, environment: dict[str, str] | None = None) -> dict[str, Version]:
    """Each package the lock pins for this Python and platform (or `environment`'s), by canonical name."""
    pinned: dict[str, Version] = {}
    for line in lock.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line)
        marker: Marker | None = requirement.marker
        if marker is not None and not marker.evaluate(environment):
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pinned[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pinned


def public(version: str) -> Version:
    """A version without its local label: the CPU build `2.13.0+cpu` is the release `2.13.0`."""
    return Version(Version(version).public)
