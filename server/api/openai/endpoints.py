"""From a validated OpenAI request to the upstream jobs, plan and response format of each endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from server.api.openai.translate import (
    Plan,
    chat_plan,
    completion_plan,
    prompts_of,
    refuse_unhonoured,
    stop_list,
    with_defaults,
)
from server.errors import ContextLengthExceeded, InvalidRequest, ProxyError
from server.generation.fanout import Job
from server.generation.formats.openai import ChatFormat, CompletionFormat, Format
from server.registry import ServedModel
from server.upstream import Upstream

__all__ = ["Work", "chat_work", "completion_work", "in_openai_terms"]

# OpenAI's documented default for /v1/completions (openai-openapi `max_tokens`, default 16).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# One request may fan out to at most this many upstream generations (prompts x n), like OpenAI's n <= 128.
MAX_CHOICES = 128


@dataclass(frozen=True, slots=True)
class Work:
    jobs: list[Job]
    plan: Plan
    fmt: Format


async def chat_work(request: ChatCompletionRequest, model: ServedModel, upstream: Upstream) -> Work:
    request = with_defaults(request, model.config.defaults)
    refuse_unhonoured(request, model.config.upstream.kind)
    template = await model.chat_template()
    if template is None:
        raise InvalidRequest(
            f"The model `{model.name}` serves /v1/completions only: it has no `chat_template` in the proxy's "
            "configuration.",
            param="model",
        )
    # No tools are offered: `refuse_unhonoured` let them through only with `tool_choice: "none"`.
    rendered = template.render([message.model_dump(exclude_none=True) for message in request.messages], tools=None)
    limits = await upstream.limits()
    max_new_tokens = _smaller(request.max_tokens, request.max_completion_tokens)
    if max_new_tokens is None and limits.max_total_tokens is not None:
        # "What the context leaves": TGI >= 3 would do this itself, but older servers default to 100 tokens.
        prompt_tokens = await upstream.count_tokens(rendered.text)
        if prompt_tokens is not None:
            max_new_tokens = limits.max_total_tokens - prompt_tokens
            if max_new_tokens < 1:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {limits.max_total_tokens} tokens. However, your "
                    f"messages resulted in {prompt_tokens} tokens.",
                    param="messages",
                )
    stops = stop_list(request.stop, rendered.stop, model.config.stop)
    plan = chat_plan(request, limits, max_new_tokens=max_new_tokens, stops=stops)
    jobs = [Job(j, rendered.text, 0, plan.for_choice(j)) for j in range(plan.n)]
    fmt = ChatFormat(model.name, include_usage=plan.include_usage, top_logprobs=plan.top_logprobs or 0)
    return Work(jobs, plan, fmt)


async def completion_work(request: CompletionRequest, model: ServedModel, upstream: Upstream) -> Work:
    request = with_defaults(request, model.config.defaults)
    prompts = prompts_of(request)
    limits = await upstream.limits()
    max_tokens = request.max_tokens if request.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    plan = completion_plan(request, limits, max_new_tokens=max_tokens, stops=stop_list(request.stop, model.config.stop))
    if len(prompts) * plan.n > MAX_CHOICES:
        raise InvalidRequest(
            f"A request may ask for at most {MAX_CHOICES} choices (prompts x n); this one asks for "
            f"{len(prompts) * plan.n}.",
            param="prompt" if len(prompts) > 1 else "n",
        )
    jobs = [
        Job(i * plan.n + j, prompt, i, plan.for_choice(j), prompt if request.echo else "")
        for i, prompt in enumerate(prompts)
        for j in range(plan.n)
    ]
    fmt = CompletionFormat(model.name, include_usage=plan.include_usage, top_logprobs=plan.top_logprobs or 0)
    return Work(jobs, plan, fmt)


# The upstream names TGI's parameters; clients know OpenAI's.
_CHAT_PARAMS = {"inputs": "messages", "max_new_tokens": "max_tokens", "top_n_tokens": "top_logprobs"}
_COMPLETION_PARAMS = {"inputs": "prompt", "max_new_tokens": "max_tokens", "top_n_tokens": "logprobs"}


def in_openai_terms(exc: ProxyError, *, chat: bool) -> ProxyError:
    names = _CHAT_PARAMS if chat else _COMPLETION_PARAMS
    if exc.param in names:
        exc.param = names[exc.param]
    return exc


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
