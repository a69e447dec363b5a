"""Layering checks the contracts cannot express. The pure modules stay pure at run time: importing them loads no
web framework, HTTP client or template engine; and test code shares helpers through support modules only.

`lint-imports` (the contracts in pyproject.toml) checks the import graph of the source; this checks what Python
actually loads, which also covers a package's `__init__` that a module pulls in by being inside it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sockets

HEAVY = ("fastapi", "starlette", "sse_starlette", "httpx", "httptools", "uvicorn", "jinja2", "torch")


@pytest.mark.parametrize(
    "module",
    [
        "server.generation.run",
        "server.generation.relay",
        "server.generation.formats.chat",
        "server.generation.formats.completion",
        "server.api.openai.translate",
        "server.upstream.base",
        "server.upstream.tgi_wire",
        "server.upstream.openai_wire",
    ],
)
def test_a_pure_module_loads_nothing_heavy(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_test_modules_share_helpers_through_support_modules_only() -> None:
    """A test module imports no other test module and not conftest; the fakes and the scripts import no tests."""
    offending = []
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("fakes/**/*.py"), *ROOT.glob("scripts/*.py")]):
        for name in imported_modules(path):
            leaf = name.rsplit(".", 1)[-1]
            testing = path.is_relative_to(ROOT / "tests")
            if (testing and name.startswith("tests.") and (leaf.startswith("test_") or leaf == "conftest")) or (
                not testing and (name == "tests" or name.startswith("tests."))
            ):
                offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offending == []
