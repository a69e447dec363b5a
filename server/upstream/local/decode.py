"""One generation on the in-process model, one token per step, as TGI's `/generate_stream` events.

`Generation.steps()` is a plain generator: each `next()` runs one forward pass and returns one event, so the
engine can interleave several generations on one thread and drop any of them between two tokens. Where the
wire shows it, this does what TGI's Python server does (server/text_generation_server/utils/tokens.py and
models/causal_lm.py): penalties, then temperature, top-k, top-p and typical-p; logprobs and top tokens from
that final distribution; greedy is argmax; special tokens keep their text and say `special: true`; text comes
from incremental detokenisation (prefix and read offsets) so a character split across tokens is sent whole;
the final event carries the details, with the EOS token counted among the generated tokens.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Generator
from typing import Any

from server.errors import ContextLengthExceeded, InvalidRequest
from server.upstream.local.loader import LoadedModel
from server.upstream.tgi_wire import FinishReason, GenerateParameters, PrefillToken, StreamResponse, Token

__all__ = ["Generation", "refuse_unsupported"]

# TGI decodes each new token together with a few before it, so tokenizers that mark word starts get them right.
_CONTEXT_TOKENS = 5

# Parameters transformers has no counterpart for here; refused by name rather than silently ignored.
# name: (what it is, the request field clients know it by)
_UNSUPPORTED = {
    "grammar": ("grammar-constrained output", "response_format"),
    "watermark": ("`watermark`", "watermark"),
    "adapter_id": ("LoRA adapters", "adapter_id"),
}


def refuse_unsupported(parameters: GenerateParameters) -> None:
    for name, (what, param) in _UNSUPPORTED.items():
        if parameters.get(name):
            raise InvalidRequest(f"The local model does not support {what}.", param=param)
    if parameters.get("best_of", 1) > 1:
        if not parameters.get("do_sample"):
            raise InvalidRequest("`best_of` needs sampling: give a `temperature` above 0.", param="best_of")
        if parameters.get("seed") is not None:
            raise InvalidRequest("`seed` cannot be combined with `best_of`.", param="seed")  # as TGI


class Generation:
    def __init__(self, loaded: LoadedModel, prompt: str, parameters: GenerateParameters) -> None:
        self._loaded = loaded
        self._prompt = prompt
        self._parameters = parameters
        self.prefill: list[PrefillToken] | None = None  # set by the first step when `decoder_input_details`

    def steps(self) -> Generator[StreamResponse, None, None]:
        import torch
        import transformers

        loaded, parameters = self._loaded, self._parameters
        model, tokenizer = loaded.model, loaded.tokenizer
        prompt_ids = loaded.encode(self._prompt)
        if parameters.get("truncate"):
            prompt_ids = prompt_ids[-parameters["truncate"] :]
        max_new_tokens = self._budget(len(prompt_ids))
        sampling = bool(parameters.get("do_sample"))
        seed = parameters.get("seed", secrets.randbits(63)) if sampling else None
        generator = torch.Generator(device=loaded.device).manual_seed(seed) if seed is not None else None
        choose = _Chooser(parameters, sampling, generator)
        top_n = parameters.get("top_n_tokens", 0)
        stops = parameters.get("stop", [])

        ids = torch.tensor([prompt_ids], device=loaded.device)
        want_prefill = bool(parameters.get("decoder_input_details"))
        # One KV cache for the whole generation, filled in place by every forward pass. transformers 5.x renamed
        # the forward keyword `past_key_values` to `cache` (the old name warns, and goes in 5.40), so the cache
        # is passed under the name this release's `forward` declares (`LoadedModel.cache_keyword`).
        cache = {loaded.cache_keyword: transformers.DynamicCache(config=model.config)}
        # Logits for every prompt position only when their logprobs are asked for (0 keeps all).
        output = model(input_ids=ids, use_cache=True, logits_to_keep=0 if want_prefill else 1, **cache)
        if want_prefill:
            self.prefill = self._prefill(prompt_ids, output.logits[0])
        history = list(prompt_ids)
        prefix_offset, read_offset = max(len(history) - _CONTEXT_TOKENS, 0), len(history)
        text = ""  # the generated text so far, for stop sequences
        for count in range(1, max_new_tokens + 1):
            token_id, logprobs = choose(history, output.logits[0, -1])
            history.append(token_id)
            special = token_id in loaded.special_ids
            piece, prefix_offset, read_offset = _detokenize(tokenizer, history, prefix_offset, read_offset)
            event: StreamResponse = {
                "token": {"id": token_id, "text": piece, "logprob": _finite(logprobs[token_id]), "special": special},
                "generated_text": None,
                "details": None,
            }
            if top_n:
                event["top_tokens"] = self._top_tokens(logprobs, top_n)
            reason: FinishReason | None = None
            if token_id in loaded.eos_ids:
                reason = "eos_token"
            elif not special and stops:
                text += piece
                window = text[-(len(piece) + max(len(stop) for stop in stops)) :]
                reason = "stop_sequence" if any(stop in window for stop in stops) else None
            if reason is None and count == max_new_tokens:
                reason = "length"
            if reason is not None:
                generated = history[len(prompt_ids) :]
                event["generated_text"] = tokenizer.decode(generated, skip_special_tokens=True)
                event["details"] = {
                    "finish_reason": reason,
                    "generated_tokens": count,
                    "seed": seed,
                    "input_length": len(prompt_ids),
                }
                yield event
                return
            yield event
            step = torch.tensor([[token_id]], device=loaded.device)
            output = model(input_ids=step, use_cache=True, **cache)

    def _budget(self, prompt_tokens: int) -> int:
        """`max_new_tokens`, checked against the context as TGI's router does; none given: what the context leaves."""
        limit = self._loaded.max_total_tokens
        asked = self._parameters.get("max_new_tokens")
        if prompt_tokens >= limit or (asked is not None and prompt_tokens + asked > limit):
            raise ContextLengthExceeded(
                f"`inputs` tokens + `max_new_tokens` must be <= {limit}. Given: {prompt_tokens} `inputs` tokens "
                f"and {asked if asked is not None else 1} `max_new_tokens`",
                param="inputs",
            )
        return asked if asked is not None else limit - prompt_tokens

    def _prefill(self, prompt_ids: list[int], logits: Any) -> list[PrefillToken]:
        """Each prompt token's logprob given the ones before it; the first has none (TGI sends null)."""
        import torch

        logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
        targets = torch.tensor(prompt_ids[1:], device=logits.device)
        values = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1).tolist() if len(prompt_ids) > 1 else []
        texts = [self._loaded.tokenizer.decode([token_id]) for token_id in prompt_ids]
        return [
            {"id": token_id, "text": texts[i], "logprob": None if i == 0 else _finite(values[i - 1])}
            for i, token_id in enumerate(prompt_ids)
        ]

    def _top_tokens(self, logprobs: Any, n: int) -> list[Token]:
        import torch

        values, indexes = torch.topk(logprobs, n)
        tokenizer, special = self._loaded.tokenizer, self._loaded.special_ids
        return [
            {"id": i, "text": tokenizer.decode([i]), "logprob": value, "special": i in special}
            for value, i in zip(values.tolist(), indexes.tolist(), strict=True)
            if math.isfinite(value)  # tokens a warper removed have no probability to show
        ]


class _Chooser:
    """The next token and the log-distribution it was drawn from."""

    def __init__(self, parameters: GenerateParameters, sampling: bool, generator: Any) -> None:
        import transformers

        self._sampling = sampling
        self._generator = generator
        self._frequency_penalty = parameters.get("frequency_penalty", 0.0)
        processors: list[Any] = []
        if parameters.get("repetition_penalty", 1.0) != 1.0:
            processors.append(transformers.RepetitionPenaltyLogitsProcessor(parameters["repetition_penalty"]))
        if sampling:
            temperature = parameters.get("temperature", 1.0)
            if temperature != 1.0:
                processors.append(transformers.TemperatureLogitsWarper(temperature))
            if "top_k" in parameters:
                processors.append(transformers.TopKLogitsWarper(parameters["top_k"]))
            if "top_p" in parameters:
                processors.append(transformers.TopPLogitsWarper(parameters["top_p"]))
            if "typical_p" in parameters:
                processors.append(transformers.TypicalLogitsWarper(parameters["typical_p"]))
        self._processors = processors

    def __call__(self, history: list[int], logits: Any) -> tuple[int, Any]:
        import torch

        scores = logits.float().unsqueeze(0)
        ids = torch.tensor([history], device=scores.device)
        if self._frequency_penalty:
            # TGI's frequency penalty: each token's share of the sequence so far, times the penalty.
            counts = torch.zeros_like(scores).scatter_add_(1, ids, torch.ones_like(ids, dtype=scores.dtype))
            scores = scores - counts / len(history) * self._frequency_penalty
        for processor in self._processors:
            scores = processor(ids, scores)
        logprobs = torch.log_softmax(scores, dim=-1)[0]
        if self._sampling:
            token = torch.multinomial(logprobs.exp(), 1, generator=self._generator)
        else:
            token = torch.argmax(logprobs)
        return int(token.item()), logprobs


def _detokenize(tokenizer: Any, history: list[int], prefix_offset: int, read_offset: int) -> tuple[str, int, int]:
    """The new token's text, or "" while it ends inside a character (TGI's `decode_token`)."""
    before = tokenizer.decode(history[prefix_offset:read_offset], skip_special_tokens=False)
    after = tokenizer.decode(history[prefix_offset:], skip_special_tokens=False)
    if len(after) > len(before) and not after.endswith("\ufffd"):
        return after[len(before) :], read_offset, len(history)
    return "", prefix_offset, read_offset


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None  # TGI serialises NaN as null
