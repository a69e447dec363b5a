"""Kind `local`: a model run in this process by transformers, behind the same interface as a TGI server.

Generation happens on the engine's worker thread (`server.upstream.local.engine`); this side turns its events
into the async iterators the request path reads, in batches of what has arrived, exactly like `TGIClient.stream`.
Closing a stream's iterator (the client left) cancels its generation before the next token.

Without the `local` extra (torch, transformers, gguf, accelerate) nothing is loaded: the server
starts and serves its other models, and requests for this one get a 503 saying how to install it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from server.config import LocalModelConfig
from server.errors import LocalModelUnavailable, ProxyError, UpstreamFailed
from server.upstream.base import Generated, Limits, ModelState, ShippedTemplate
from server.upstream.local.decode import Generation, refuse_unsupported
from server.upstream.local.engine import END, Decoding, Delivery, Engine
from server.upstream.local.loader import INSTALL_HINT, LoadedModel, missing_requirements
from server.upstream.tgi_wire import Details, GenerateParameters, GenerateResponse, StreamResponse, Token

__all__ = ["LocalModel"]

logger = logging.getLogger(__name__)

_CLOSE_SECONDS = 10.0  # longest wait at shutdown for the generation step in progress


class LocalModel:
    def __init__(self, config: LocalModelConfig, *, where: str) -> None:
        self._missing = missing_requirements()
        self.engine: Engine | None = None  # None without the extra
        if self._missing:
            logger.warning(
                "the local model of %s is unavailable: %s not installed; install it with %s",
                where,
                ", ".join(self._missing),
                INSTALL_HINT,
            )
        else:
            self.engine = Engine(config, where)

    def state(self) -> ModelState:
        if self.engine is None:
            return "unavailable"
        if not self.engine.loaded.done():
            return "loading"
        return "unavailable" if self.engine.loaded.exception() else "loaded"

    async def shipped_template(self) -> ShippedTemplate | None:
        """The template the model's own tokenizer ships (for GGUF: its `tokenizer.chat_template` metadata)."""
        loaded = await self._loaded()
        if not loaded.chat_template:
            return None
        return ShippedTemplate(loaded.chat_template, loaded.bos_token, loaded.eos_token)

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        loaded = await self._loaded()
        refuse_unsupported(parameters)
        runs = parameters.get("best_of", 1)
        answers = await asyncio.gather(*(self._collect(Generation(loaded, prompt, parameters)) for _ in range(runs)))
        # TGI's best_of: the sequence the model found most likely, by the sum of its tokens' logprobs.
        response, prompt_tokens = max(answers, key=lambda answer: _likelihood(answer[0]))
        return Generated(response, prompt_tokens)

    async def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        loaded = await self._loaded()
        refuse_unsupported(parameters)
        async for batch in self._run(Generation(loaded, prompt, parameters)):
            yield batch

    async def limits(self) -> Limits:
        loaded = await self._loaded()
        return Limits(max_total_tokens=loaded.max_total_tokens)

    async def count_tokens(self, prompt: str) -> int | None:
        loaded = await self._loaded()
        return len(await asyncio.to_thread(loaded.encode, prompt))

    async def healthy(self) -> bool:
        return self.state() == "loaded"

    async def aclose(self) -> None:
        if self.engine is not None:
            # A load in progress cannot be interrupted: the thread is a daemon, so it does not hold up exit.
            await asyncio.to_thread(self.engine.close, _CLOSE_SECONDS)

    async def _loaded(self) -> LoadedModel:
        """The model, once loaded: a request that comes while it loads waits for it."""
        if self.engine is None:
            raise LocalModelUnavailable(
                "This model runs inside the proxy and needs the optional `local` extra, which is not installed "
                f"(missing: {', '.join(self._missing)}). Install it with: {INSTALL_HINT}"
            )
        try:
            return await asyncio.wrap_future(self.engine.loaded)
        except Exception as exc:
            raise LocalModelUnavailable(
                f"This model runs inside the proxy and could not be loaded ({type(exc).__name__}); see the server log."
            ) from None

    async def _collect(self, generation: Generation) -> tuple[GenerateResponse, int]:
        """A whole answer: TGI's `/generate` response, its details, and the prompt's token count."""
        tokens: list[Token] = []
        top_tokens: list[list[Token]] = []
        async for batch in self._run(generation):
            for event in batch:
                tokens.append(event["token"])
                if "top_tokens" in event:
                    top_tokens.append(event["top_tokens"])
                final, text = event["details"], event["generated_text"]
                if final is not None and text is not None:
                    details: Details = {
                        "finish_reason": final["finish_reason"],
                        "generated_tokens": final["generated_tokens"],
                        "seed": final["seed"],
                        "prefill": generation.prefill or [],
                        "tokens": tokens,
                    }
                    if top_tokens:
                        details["top_tokens"] = top_tokens
                    response: GenerateResponse = {"generated_text": text, "details": details}
                    return response, final.get("input_length", 0)
        raise UpstreamFailed("The local model stopped before its final token.")

    async def _run(self, generation: Generation) -> AsyncIterator[list[StreamResponse]]:
        assert self.engine is not None  # `_loaded` succeeded
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        job = Decoding(generation.steps(), lambda item: _post(loop, inbox, item, job))
        self.engine.submit(job)
        try:
            while True:
                arrived = [await inbox.get()]
                while not inbox.empty():
                    arrived.append(inbox.get_nowait())
                batch: list[StreamResponse] = []
                for item in arrived:
                    if isinstance(item, BaseException):
                        if batch:  # the tokens before a failure still reach the client
                            yield batch
                        raise _as_proxy_error(item)
                    if item is END:
                        raise UpstreamFailed("The local model stopped before its final token.")
                    event: StreamResponse = item  # type: ignore[assignment]
                    batch.append(event)
                    if event["generated_text"] is not None:
                        yield batch
                        return
                yield batch
        finally:
            job.cancelled.set()


def _post(loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Delivery], item: Delivery, job: Decoding) -> None:
    """Hand an event from the worker thread to the request's event loop."""
    try:
        loop.call_soon_threadsafe(inbox.put_nowait, item)
    except RuntimeError:  # the loop has closed: nobody is waiting for this generation any more
        job.cancelled.set()


def _likelihood(response: GenerateResponse) -> float:
    return sum(token["logprob"] or 0.0 for token in response["details"]["tokens"])


def _as_proxy_error(exc: BaseException) -> ProxyError:
    if isinstance(exc, ProxyError):
        return exc
    logger.error("the local model failed while generating", exc_info=exc)
    return UpstreamFailed(f"The local model failed while generating ({type(exc).__name__}).")
