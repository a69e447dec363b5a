"""`POST /v1/chat/completions`: the endpoint descriptor and the planner for translated kinds."""

from __future__ import annotations

from server.api.endpoint import Endpoint, Work
from server.api.openai.protocol import ChatCompletionRequest
from server.api.openai.translate import chat_plan, refuse_unhonoured, stop_list, with_defaults
from server.errors import ContextLengthExceeded, InvalidRequest
from server.generation.formats.chat import ChatAnswer, ChatStream
from server.generation.plan import Job
from server.generation.relay import CHAT_CHOICES
from server.registry import ServedModel
from server.upstream.base import Upstream

__all__ = ["CHAT"]


async def plan_chat(request: ChatCompletionRequest, model: ServedModel, upstream: Upstream) -> Work:
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
    return Work([Job(j, rendered.text, 0, plan.for_choice(j)) for j in range(plan.n)], plan)


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _choice_count(request: ChatCompletionRequest) -> int:
    return request.n or 1


CHAT: Endpoint[ChatCompletionRequest] = Endpoint(
    path="/v1/chat/completions",
    name="chat_completions",
    schema=ChatCompletionRequest,
    plan=plan_chat,
    stream_format=ChatStream,
    answer_format=ChatAnswer,
    choice_shape=CHAT_CHOICES,
    choice_count=_choice_count,
    param_names={"inputs": "messages", "max_new_tokens": "max_tokens", "top_n_tokens": "top_logprobs"},
)
