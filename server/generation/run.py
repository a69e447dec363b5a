"""Run a request's jobs against the upstream and shape the results: a whole answer, or SSE bytes.

Stream contract (https://platform.openai.com/docs/api-reference/chat-streaming): a role chunk per choice first
(index 0 first), content chunks, exactly one finish chunk per choice, the usage chunk when asked, then the
format's end (`data: [DONE]`). An error after the first byte is reported in-band, in the format's own way
(`StreamFormat.failure`), never as a cut connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from server.errors import ProxyError
from server.generation.choice import ChoiceState, TokenLogprob
from server.generation.fanout import Keyed, MergedStreams, Ready, gather_or_cancel
from server.generation.formats.base import ChoiceResult, StreamFormat, Usage
from server.generation.framing import PING
from server.generation.parse.base import OutputParser, PassThrough
from server.generation.parse.pieces import OutputPiece
from server.generation.plan import Job, Plan
from server.upstream.base import Upstream
from server.upstream.tgi_wire import StreamDetails, StreamResponse

__all__ = ["Consumer", "EventStream", "StreamEnd", "TGIChoices", "complete", "open_stream", "stream_jobs"]

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=Keyed)
E = TypeVar("E")
J_in = TypeVar("J_in", bound=Keyed, contravariant=True)
E_in = TypeVar("E_in", contravariant=True)


async def complete(
    upstream: Upstream, jobs: Sequence[Job], plan: Plan, parser: Callable[[], OutputParser] = PassThrough
) -> tuple[list[ChoiceResult], Usage]:
    """Every job's whole answer, concurrently; each choice's text through its own output `parser`."""
    results = await gather_or_cancel([_complete_one(upstream, job, plan, parser()) for job in jobs])
    prompt_tokens: dict[int, int] = {}
    completion_tokens = 0
    choices = []
    for job, (choice, prompt_count, generated) in zip(jobs, results, strict=True):
        choices.append(choice)
        prompt_tokens[job.prompt_index] = prompt_count
        completion_tokens += generated
    return choices, Usage(sum(prompt_tokens.values()), completion_tokens)


async def _complete_one(
    upstream: Upstream, job: Job, plan: Plan, parser: OutputParser
) -> tuple[ChoiceResult, int, int]:
    generated = await upstream.generate(job.prompt, job.parameters)
    details = generated.response.get("details")
    state = ChoiceState(plan.stops, want_logprobs=plan.top_logprobs is not None)
    text: list[str] = []
    logprobs: list[TokenLogprob] = []

    def take(parts: Sequence[OutputPiece]) -> None:
        for part in parts:
            text.append(part.text)
            logprobs.extend(part.logprobs or ())

    if details is not None:
        tops = details.get("top_tokens") or []
        for i, token in enumerate(details["tokens"]):
            take(parser.feed(state.add(token, tops[i] if i < len(tops) else None)))
            if state.stopped:
                break
    else:  # an upstream that ignored `details`: its text is all there is
        whole = generated.response["generated_text"]
        take(parser.feed(state.add({"id": 0, "text": whole, "logprob": None, "special": False})))
    take(parser.feed(state.finish()))
    take(parser.finish())
    reason, completion_tokens = state.outcome(details)
    prompt_tokens = generated.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = await upstream.count_tokens(job.prompt) or 0
    prefill = details.get("prefill") if details is not None else None
    choice = ChoiceResult(
        job.index,
        "".join(text),
        reason,
        logprobs if plan.top_logprobs is not None else None,
        job.prefix,
        [(token["text"], token["logprob"]) for token in prefill] if prefill and job.prefix else None,
    )
    return choice, prompt_tokens, completion_tokens


class Consumer(Protocol[J_in, E_in]):
    """Turns a stream's event batches into SSE bytes: `TGIChoices` for TGI jobs, `server.generation.relay`
    for OpenAI-style upstreams."""

    open_choices: int

    def take(self, key: J_in, batch: Sequence[E_in], out: list[bytes], /) -> bool:
        """Render `batch` (events of call `key`) into `out`; True when that call has nothing more to give."""
        ...

    async def tail(self) -> bytes:
        """The bytes before the format's end (the usage chunk), once every choice has finished."""
        ...


class StreamEnd:
    """Where a stream body says which chunk is its last, once it knows: the SSE response sends nothing after it
    (`server.edge.sse`)."""

    __slots__ = ("final",)

    def __init__(self) -> None:
        self.final: bytes | None = None


@dataclass(frozen=True, slots=True)
class EventStream:
    """An answer's SSE body, and where it marks its last chunk."""

    body: AsyncIterator[bytes]
    end: StreamEnd


def stream_jobs(
    upstream: Upstream,
    jobs: Sequence[Job],
    plan: Plan,
    fmt: StreamFormat,
    *,
    first_event_timeout: float,
    parser: Callable[[], OutputParser] | None = None,
) -> Awaitable[EventStream]:
    """The SSE body of a request's TGI jobs, see `open_stream`; `parser` makes each choice's output parser
    (none: plain text)."""
    # each choice's opening, then its echoed prompt (completions `echo`), sent as text before the generated text
    prelude = b"".join(
        fmt.start(job.index) + (fmt.content(job.index, job.prefix, None) if job.prefix else b"") for job in jobs
    )
    consumer = TGIChoices(upstream, jobs, plan, fmt, parser)
    return open_stream(
        jobs,
        lambda job: upstream.stream(job.prompt, job.parameters),
        consumer,
        fmt,
        prelude=prelude,
        first_event_timeout=first_event_timeout,
    )


async def open_stream(
    calls: Sequence[J],
    open_call: Callable[[J], AsyncIterator[list[E]]],
    consumer: Consumer[J, E],
    fmt: StreamFormat,
    *,
    prelude: bytes,
    first_event_timeout: float,
) -> EventStream:
    """Start the upstream streams and wait (up to `first_event_timeout`) for the first event.

    An error that arrives first raises here, so the caller answers with a plain HTTP error; otherwise the
    returned body yields `prelude` (the role chunks), then what `consumer` renders, then the format's end. If
    the first token is slow, the body starts with a ping comment so the client and any proxy in between see
    bytes while the model works.
    """
    merged = MergedStreams(calls, open_call)
    events = merged.events()
    try:
        slow = not await merged.arrived(first_event_timeout)
        # Something arrived: taking it does not wait, and an upstream error raises here, before any byte is sent.
        ready = None if slow else await anext(events, None)
    except BaseException:
        await merged.close()
        raise
    end = StreamEnd()
    return EventStream(_render(merged, events, ready, slow, consumer, fmt, prelude, end), end)


async def _render(
    merged: MergedStreams[J, E],
    events: AsyncGenerator[Ready[J, E], None],
    ready: Ready[J, E] | None,
    slow: bool,
    consumer: Consumer[J, E],
    fmt: StreamFormat,
    prelude: bytes,
    end: StreamEnd,
) -> AsyncIterator[bytes]:
    head = b""  # the role chunks, when they can leave together with the first tokens (one write, not two)
    try:
        if slow:
            yield PING + prelude  # the role chunks go at once: the client sees its answer has begun
            ready = await anext(events, None)
        else:
            head = prelude
        while ready is not None:
            # Events that arrived together leave together: one write instead of one per token.
            out: list[bytes] = [head]
            head = b""
            for key, batch in ready:
                if consumer.take(key, batch, out):
                    merged.stop(key)
            chunk = b"".join(out)
            if chunk:
                yield chunk
            if consumer.open_choices == 0:
                break
            ready = await anext(events, None)
        if consumer.open_choices:
            # the stream ended without a final event for some choice: the upstream misbehaved
            raise ProxyError("The upstream stream ended before every choice finished.")
        # Everything that awaits happens before the last bytes: while this generator awaits, sse-starlette
        # may send a keep-alive comment, and nothing may follow the end.
        last = await consumer.tail()
        await merged.close()
        end.final = head + last + fmt.end()
        yield end.final
    except Exception as exc:  # after the first byte, every failure is reported in-band
        await merged.close()
        end.final = head + fmt.failure(_reportable(exc))
        yield end.final
    finally:
        await merged.close()


def _reportable(exc: Exception) -> ProxyError:
    if isinstance(exc, ProxyError):
        return exc
    logger.error("unexpected error inside a stream", exc_info=exc)
    return ProxyError("The server had an error while processing your request.")


class TGIChoices:
    """The stream consumer for TGI jobs: each choice's tokens through its `ChoiceState` and output parser,
    and the usage they add up to."""

    def __init__(
        self,
        upstream: Upstream,
        jobs: Sequence[Job],
        plan: Plan,
        fmt: StreamFormat,
        parser: Callable[[], OutputParser] | None = None,
    ) -> None:
        want_logprobs = plan.top_logprobs is not None
        self._states = {job.index: ChoiceState(plan.stops, want_logprobs=want_logprobs) for job in jobs}
        # One output parser per choice; none for plain text, whose pieces go straight to the format (a parser
        # call per token costs about 0.5 us here, a sixth of the token's path).
        self._parsers = {job.index: parser() for job in jobs} if parser is not None else None
        self._upstream = upstream
        self._jobs = jobs
        self._include_usage = plan.include_usage
        self._fmt = fmt
        self.prompt_tokens: dict[int, int | None] = {}  # per finished choice, from TGI's final details
        self.completion_tokens = 0
        self.open_choices = len(jobs)

    def take(self, job: Job, batch: Sequence[StreamResponse], out: list[bytes]) -> bool:
        """Render a batch of one choice's events into `out`; True when the choice has just finished."""
        if job.index in self.prompt_tokens:  # already finished: late events are dropped
            return False
        state = self._states[job.index]
        feed = self._parsers[job.index].feed if self._parsers is not None else None
        content = self._fmt.content
        for event in batch:
            piece = state.add(event["token"], event.get("top_tokens"))
            if piece.text or piece.logprobs:
                if feed is None:
                    out.append(content(job.index, piece.text, piece.logprobs))
                else:
                    for part in feed(piece):
                        out.append(content(job.index, part.text, part.logprobs))
            if state.stopped or event["generated_text"] is not None:
                self._finish(job, state, event["details"], out)
                return True
        return False

    def _finish(self, job: Job, state: ChoiceState, details: StreamDetails | None, out: list[bytes]) -> None:
        rest = state.finish()
        parser = self._parsers[job.index] if self._parsers is not None else PassThrough()
        parts = [*parser.feed(rest), *parser.finish()] if rest.text or rest.logprobs else parser.finish()
        for part in parts:
            out.append(self._fmt.content(job.index, part.text, part.logprobs))
        reason, completion_tokens = state.outcome(details)
        out.append(self._fmt.finish(job.index, reason))
        self.completion_tokens += completion_tokens
        self.prompt_tokens[job.index] = details.get("input_length") if details else None
        self.open_choices -= 1

    async def tail(self) -> bytes:
        if not self._include_usage:
            return b""
        prompt_tokens = await _prompt_tokens(self._upstream, self._jobs, self.prompt_tokens)
        return self._fmt.usage(Usage(prompt_tokens, self.completion_tokens))


async def _prompt_tokens(upstream: Upstream, jobs: Sequence[Job], counted: dict[int, int | None]) -> int:
    per_prompt: dict[int, int] = {}
    for job in jobs:
        if job.prompt_index in per_prompt:
            continue
        count = counted.get(job.index)
        if count is None:  # TGI before 2.3 has no input_length; ask its tokenizer rather than estimate
            count = await upstream.count_tokens(job.prompt) or 0
        per_prompt[job.prompt_index] = count
    return sum(per_prompt.values())
