"""`POST /v1/completions`: the endpoint descriptor and the planner for translated kinds."""

from __future__ import annotations

from server.api.endpoint import Endpoint, Work
from server.api.openai.protocol import CompletionRequest
from server.api.openai.translate import completion_plan, prompts_of, stop_list, with_defaults
from server.errors import InvalidRequest
from server.generation.formats.completion import CompletionAnswer, CompletionStream
from server.generation.plan import Job
from server.generation.relay import COMPLETION_CHOICES
from server.registry import ServedModel
from server.upstream.base import Upstream

__all__ = ["COMPLETIONS", "MAX_CHOICES"]

# OpenAI's documented default for /v1/completions (openai-openapi `CreateCompletionRequest.max_tokens`: 16).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# One request may fan out to at most this many upstream generations (prompts x n), like OpenAI's n <= 128.
MAX_CHOICES = 128


async def plan_completion(request: CompletionRequest, model: ServedModel, upstream: Upstream) -> Work:
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
    return Work(jobs, plan)


def _choice_count(request: CompletionRequest) -> int:
    return (request.n or 1) * len(prompts_of(request))


COMPLETIONS: Endpoint[CompletionRequest] = Endpoint(
    path="/v1/completions",
    name="completions",
    schema=CompletionRequest,
    plan=plan_completion,
    stream_format=CompletionStream,
    answer_format=CompletionAnswer,
    choice_shape=COMPLETION_CHOICES,
    choice_count=_choice_count,
    param_names={"inputs": "prompt", "max_new_tokens": "max_tokens", "top_n_tokens": "logprobs"},
)
