"""Client environments that cannot share the test virtualenv: a Python venv for clients that pin `openai<3`
(LiteLLM, LlamaIndex) and a node_modules folder for the `openai` npm package.

Each is installed from a declaration kept next to the client scripts (`requirements.txt`, `package.json`), at
the versions of its lock (`requirements.lock`, `package-lock.json`, written by `scripts/lock`), into
`.client-envs/` at the repository root (git-ignored), once per machine: a stamp holding the hash of the
declaration and its lock decides whether the install is current. Installs go through the ordinary clients (pip, npm), so
they use whatever registry those are configured for. A missing `node`/`npm` is a failure, not a skip: CI has
them, and a client table entry that was not run would be a lie.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CLIENTS_DIR = Path(__file__).parent
ENVS_DIR = CLIENTS_DIR.parents[1] / ".client-envs"
# Generous: a first install on a fresh machine downloads a few hundred MB of wheels (llama-index-core, numpy).
INSTALL_TIMEOUT = 900
RUN_TIMEOUT = 180


def _install_once(target: Path, declaration: Path, lock: Path, install: Callable[[], None]) -> None:
    stamp = target / ".installed"
    digest = hashlib.sha256(declaration.read_bytes() + lock.read_bytes() + sys.version.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    install()
    stamp.write_text(digest)


def _run_checked(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def openai2_python() -> Path:
    """The interpreter of the venv built from `openai2/requirements.txt` (installed on first use)."""
    target = ENVS_DIR / "openai2"
    requirements = CLIENTS_DIR / "openai2" / "requirements.txt"
    lock = CLIENTS_DIR / "openai2" / "requirements.lock"
    python = target / "bin" / "python"

    def install() -> None:
        venv.create(target, with_pip=False)  # the test env's pip installs into it (`pip --python`)
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
        _run_checked([*pip, "-c", str(lock), "-r", str(requirements)], timeout=INSTALL_TIMEOUT)

    _install_once(target, requirements, lock, install)
    return python


def node_modules() -> Path:
    """A folder holding `package.json` from `node/` and its installed `node_modules` (installed on first use)."""
    target = ENVS_DIR / "node"
    package = CLIENTS_DIR / "node" / "package.json"
    lock = CLIENTS_DIR / "node" / "package-lock.json"
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are required for the Node client test (CI has them)")

    def install() -> None:
        shutil.copy(package, target / "package.json")
        shutil.copy(lock, target / "package-lock.json")  # names, versions and integrity hashes; no addresses
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        _run_checked(command, cwd=target, timeout=INSTALL_TIMEOUT)

    _install_once(target, package, lock, install)
    return target


def run_client(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    """Run a client script that prints one JSON document on stdout and return it parsed."""
    result = _run_checked(command, env=env, cwd=cwd, timeout=RUN_TIMEOUT)
    return json.loads(result.stdout)
