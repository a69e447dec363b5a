"""Browser and localhost hygiene on a real loopback socket: CORS, the Host allowlist, the body size limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from tests.support import MODEL, SettingsFactory

pytestmark = pytest.mark.sockets

APP_ORIGIN = "http://localhost:3000"
PREFLIGHT = {
    "origin": APP_ORIGIN,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-stainless-lang",
}


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


@pytest.fixture
def serve(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> Iterator[Any]:
    """`serve(**server_settings)` -> the proxy's URL, on 127.0.0.1, over the fake TGI on its own socket."""
    with LoopbackServer(fake_tgi.app) as upstream:
        servers: list[LoopbackServer] = []

        def start(**server: Any) -> str:
            proxy = LoopbackServer(create_app(make_settings(upstream.url, server=server)))
            proxy.start()
            servers.append(proxy)
            return proxy.url

        yield start
        for proxy in servers:
            proxy.stop()


def test_preflight_needs_no_key_and_allows_the_configured_origin(serve: Any) -> None:
    url = serve(api_keys=["sk-k"], cors_origins=[APP_ORIGIN])
    response = httpx.options(f"{url}/v1/chat/completions", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    # cors_headers defaults to "*": whatever the SDK asks for is allowed, its x-stainless-* headers included
    assert response.headers["access-control-allow-headers"] == PREFLIGHT["access-control-request-headers"]
    assert response.headers["x-request-id"]


def test_cors_headers_on_answers_and_on_401(serve: Any) -> None:
    url = serve(api_keys=["sk-k"], cors_origins=[APP_ORIGIN])
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    refused = httpx.post(f"{url}/v1/completions", json=body, headers={"origin": APP_ORIGIN})
    assert_envelope(refused, 401, "invalid_api_key")
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN
    answered = httpx.post(
        f"{url}/v1/completions", json=body, headers={"origin": APP_ORIGIN, "authorization": "Bearer sk-k"}
    )
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = answered.headers["access-control-expose-headers"]
    assert "x-request-id" in exposed and "x-proxy-overhead-ms" in exposed


def test_refused_preflight_is_an_envelope(serve: Any) -> None:
    url = serve(cors_origins=[APP_ORIGIN], cors_headers=["authorization", "content-type"])
    other_origin = httpx.options(f"{url}/v1/models", headers={**PREFLIGHT, "origin": "https://evil.example"})
    assert "origin" in assert_envelope(other_origin, 400, "cors_preflight_refused")["message"]
    assert "access-control-allow-origin" not in other_origin.headers
    other_header = httpx.options(f"{url}/v1/models", headers=PREFLIGHT)
    assert "headers" in assert_envelope(other_header, 400, "cors_preflight_refused")["message"]
    allowed = httpx.options(
        f"{url}/v1/models", headers={**PREFLIGHT, "access-control-request-headers": "Authorization"}
    )
    assert allowed.status_code == 200


def test_no_cors_headers_unless_configured(serve: Any) -> None:
    url = serve()
    response = httpx.get(f"{url}/v1/models", headers={"origin": APP_ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert httpx.options(f"{url}/v1/models", headers=PREFLIGHT).status_code == 405


def test_rebinding_hosts_are_refused_and_loopback_names_accepted(serve: Any) -> None:
    url = serve(api_keys=["sk-k"])
    key = {"authorization": "Bearer sk-k"}
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example", "0x7f.1"):
        for path in ("/v1/models", "/health"):
            assert_envelope(httpx.get(f"{url}{path}", headers={"host": host, **key}), 403, "host_not_allowed")
    for host in ("localhost:8000", "LOCALHOST", "127.0.0.1", "127.0.0.2:1", "[::1]:8000", "app.localhost."):
        assert httpx.get(f"{url}/v1/models", headers={"host": host, **key}).status_code == 200


def test_allowed_hosts_extend_the_list_and_star_turns_it_off(serve: Any) -> None:
    extended = serve(allowed_hosts=["proxy.internal"])
    assert httpx.get(f"{extended}/health", headers={"host": "proxy.internal:8000"}).status_code == 200
    assert httpx.get(f"{extended}/health", headers={"host": "localhost"}).status_code == 200
    assert httpx.get(f"{extended}/health", headers={"host": "evil.example"}).status_code == 403
    anything = serve(allowed_hosts=["*"])
    assert httpx.get(f"{anything}/health", headers={"host": "evil.example"}).status_code == 200


def test_bound_to_all_interfaces_there_is_no_check_unless_configured(serve: Any) -> None:
    # settings say 0.0.0.0 (a container); the socket is loopback here, which makes no difference
    url = serve(host="0.0.0.0")
    assert httpx.get(f"{url}/health", headers={"host": "proxy.example.com"}).status_code == 200
    guarded = serve(host="0.0.0.0", allowed_hosts=["proxy.example.com"])
    assert httpx.get(f"{guarded}/health", headers={"host": "proxy.example.com"}).status_code == 200
    assert httpx.get(f"{guarded}/health", headers={"host": "evil.example"}).status_code == 403


def test_oversize_body_is_413_on_a_socket(serve: Any) -> None:
    url = serve(max_body_bytes=4096)
    big = {"model": MODEL, "prompt": "x" * 5000}
    assert_envelope(httpx.post(f"{url}/v1/completions", json=big), 413, "request_too_large")

    def chunks() -> Iterator[bytes]:  # no content-length: the limit is enforced while reading
        yield b'{"model": "test-model", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = httpx.post(f"{url}/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_envelope(streamed, 413, "request_too_large")


def test_prompt_over_the_context_is_context_length_exceeded(serve: Any, fake_tgi: FakeTGI) -> None:
    url = serve()
    fake_tgi.max_total_tokens = fake_tgi.max_input_tokens = 8
    long_prompt = " ".join(["word"] * 20)
    for stream in (False, True):
        body = {"model": MODEL, "prompt": long_prompt, "max_tokens": 2, "stream": stream}
        error = assert_envelope(httpx.post(f"{url}/v1/completions", json=body), 400, "context_length_exceeded")
        assert error["type"] == "invalid_request_error"
