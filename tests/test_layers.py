"""The pure modules stay pure at run time: importing them loads no web framework, HTTP client or template engine.

`lint-imports` (the contracts in pyproject.toml) checks the import graph of the source; this checks what Python
actually loads, which also covers a package's `__init__` that a module pulls in by being inside it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

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
