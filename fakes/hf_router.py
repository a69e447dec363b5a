"""A fake of the HF router's hf-inference provider, in front of a `FakeTGI` (docs/tgi-wire.md §5).

`POST /hf-inference/models/{model_id}` with `{"inputs", "parameters", "stream"}` is TGI's compat route `/`:
a stream is TGI's native SSE, a whole answer is a one-element list. The router's own refusals are the
recorded ones (`hfjs_tapes_subset_tgi_hf_inference.json`): 404 for an unknown model, 401 for a bad token;
and, by switch, 503 "currently loading" with `estimated_time`, 402 for exhausted credits, 429.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from fakes.tgi import FakeTGI, Message, Receive, Scope, Send, read_body

PREFIX = "/hf-inference/models/"
JSON = [(b"content-type", b"application/json")]


@dataclass(eq=False)
class FakeHFRouter:
    tgi: FakeTGI
    model_id: str
    token: str = "hf_test_token"
    loading_times: int = 0  # the first N calls find the model cold: 503 with `estimated_time`
    estimated_time: float = 0.05
    refuse_status: int | None = None  # 402 or 429 for every call, with the router's body
    calls: list[dict[str, object]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        model_id = scope["path"].removeprefix(PREFIX)
        if not scope["path"].startswith(PREFIX) or model_id != self.model_id:
            # recorded: 404 {"error":"Model this-model-does-not-exist-123 does not exist"}
            await _answer(send, 404, {"error": f"Model {model_id} does not exist"})
            return
        if scope["method"] == "GET":  # what a health probe sees: the route exists, it wants a POST
            await _answer(send, 405, {"error": "Method Not Allowed"})
            return
        body = await read_body(receive)
        if body is None:
            return
        request = orjson.loads(body)
        headers = dict(scope["headers"])
        self.calls.append({"body": request, "authorization": headers.get(b"authorization", b"").decode()})
        if headers.get(b"authorization") != f"Bearer {self.token}".encode():
            await _answer(send, 401, {"error": "Invalid username or password."})
        elif self.loading_times > 0:
            self.loading_times -= 1
            loading = {"error": f"Model {model_id} is currently loading", "estimated_time": self.estimated_time}
            await _answer(send, 503, loading)
        elif self.refuse_status is not None:
            await _answer(send, self.refuse_status, {"error": _REFUSALS[self.refuse_status]})
        else:
            await self._forward(scope, receive, request, send)

    async def _forward(self, scope: Scope, receive: Receive, request: dict[str, object], send: Send) -> None:
        stream = request.get("stream") is True
        forwarded = orjson.dumps({key: value for key, value in request.items() if key != "stream"})
        sent = False

        async def receive_once() -> Message:
            """The rewritten body, then the client's own messages (its disconnect reaches the fake TGI)."""
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": forwarded, "more_body": False}

        path = "/generate_stream" if stream else "/generate"
        inner = {**scope, "path": path, "raw_path": path.encode()}
        if stream:
            await self.tgi(inner, receive_once, send)
            return
        # The compat route wraps a whole answer in a list.
        start: Message = {}
        chunks: list[bytes] = []

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.tgi(inner, receive_once, collect)
        content = b"".join(chunks)
        if start["status"] == 200:
            content = b"[" + content + b"]"
        headers = [(name, value) for name, value in start["headers"] if name != b"content-length"]
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": content})


_REFUSALS = {
    402: "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more.",
    429: "Rate limit reached. You reached free usage limit (reset hourly).",
}


async def _answer(send: Send, status: int, body: dict[str, object]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})
