"""Logs: the request id on every line, one access line per request, plain and JSON formats, and no secrets;
in-process with caplog, and end to end through the console script's stderr."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import ServerConfig
from server.ops.logs import JsonFormatter, PlainFormatter, RequestIdFilter, configure_logging, fields
from tests.support import MODEL, SettingsFactory, free_port

pytestmark = pytest.mark.sockets

PROMPT = "the secret recipe is cardamom"


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with the request-id filter `configure_logging` puts on the real handler."""
    request_ids = RequestIdFilter()
    caplog.handler.addFilter(request_ids)
    caplog.set_level(logging.INFO)
    yield caplog
    caplog.handler.removeFilter(request_ids)


def server_log(captured: pytest.LogCaptureFixture) -> str:
    """What the proxy logged, as the plain format prints it (the test's own httpx client logs too)."""
    return "\n".join(PlainFormatter().format(record) for record in captured.records if record.name != "httpx")


async def call(app: Any, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        return [await http.request(method, path, **kwargs) for method, path, kwargs in requests]


async def test_one_access_line_per_request_with_its_id(
    captured: pytest.LogCaptureFixture, fake_tgi: FakeTGI, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(), upstream_transport=httpx.ASGITransport(fake_tgi.app))
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 2}
    responses = await call(
        app,
        ("POST", "/v1/completions", {"json": body, "headers": {"x-request-id": "client-id-1"}}),
        ("POST", "/v1/completions", {"json": {**body, "stream": True}}),
        ("GET", "/v1/models?api_key=sk-in-a-query", {}),
    )
    access = [record for record in captured.records if record.name == "server.access"]
    assert len(access) == 3
    assert responses[0].headers["x-request-id"] == "client-id-1"
    for record, response in zip(access, responses, strict=True):
        assert record.request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]
        values = record.fields  # type: ignore[attr-defined]
        assert values["status"] == response.status_code and values["method"] == response.request.method
        assert values["overhead_ms"] == pytest.approx(float(response.headers["x-proxy-overhead-ms"]), abs=0.001)
        assert values["duration_ms"] >= values["overhead_ms"]
    assert [record.fields["model"] for record in access] == [MODEL, MODEL, ""]  # type: ignore[attr-defined]
    assert access[2].fields["path"] == "/v1/models"  # type: ignore[attr-defined]
    assert "sk-in-a-query" not in server_log(captured) and PROMPT not in server_log(captured)


async def test_lines_written_while_serving_carry_the_request_id(
    captured: pytest.LogCaptureFixture, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings("http://127.0.0.1:9"))  # nothing listens: the upstream client logs a warning
    [response] = await call(app, ("POST", "/v1/completions", {"json": {"model": MODEL, "prompt": "x"}}))
    assert response.status_code == 502
    warning = next(record for record in captured.records if record.name == "server.upstream.http")
    assert warning.request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("log_prompts", [False, True])
async def test_prompts_and_outputs_only_when_asked(
    captured: pytest.LogCaptureFixture, fake_tgi: FakeTGI, make_settings: SettingsFactory, log_prompts: bool
) -> None:
    fake_tgi.script = [" cinnamon", " too"]
    app = create_app(
        make_settings(server={"log_prompts": log_prompts}), upstream_transport=httpx.ASGITransport(fake_tgi.app)
    )
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 2}
    await call(
        app,
        ("POST", "/v1/completions", {"json": body}),
        ("POST", "/v1/completions", {"json": {**body, "stream": True}}),
    )
    logged = [record.fields for record in captured.records if record.name == "server.observed"]  # type: ignore[attr-defined]
    if not log_prompts:
        assert logged == [] and PROMPT not in server_log(captured) and "cinnamon" not in server_log(captured)
        return
    assert logged == [{"model": MODEL, "text": PROMPT}, {"model": MODEL, "text": " cinnamon too"}] * 2


def record(message: str, **values: Any) -> logging.LogRecord:
    made = logging.LogRecord("server.access", logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(fields(**values))
    return made


def test_plain_lines_quote_values_that_could_forge_a_line() -> None:
    line = PlainFormatter().format(record("request", path="/v1/models", model="a b\nINFO fake", empty=""))
    assert line.endswith(' [-] request path=/v1/models model="a b\\nINFO fake" empty=""')
    assert "\n" not in line


def test_json_lines_carry_fields_and_exceptions() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    entry = orjson.loads(JsonFormatter().format(record("request", status=200, duration_ms=1.5)))
    assert entry["message"] == "request" and entry["status"] == 200 and entry["duration_ms"] == 1.5
    assert entry["request_id"] == "-" and entry["level"] == "info" and entry["time"].endswith("+00:00")
    entry = orjson.loads(JsonFormatter().format(failed))
    assert entry["message"] == "failed here" and "RuntimeError: kaput" in entry["exception"]


def test_configure_logging_installs_one_handler_and_quiets_httpx() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.level, logging.getLogger("httpx").level
    handler = configure_logging(ServerConfig(log_format="json", log_level="debug"), stream)
    try:
        logging.getLogger("server.test").debug("hello", extra=fields(n=1))
        logging.getLogger("httpx").info("HTTP Request: POST http://user:pass@tgi/generate")
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        logging.getLogger("httpx").setLevel(saved[1])
        logging.captureWarnings(False)
    [line] = [line for line in stream.getvalue().splitlines() if "server.test" in line or "httpx" in line]
    assert orjson.loads(line)["n"] == 1 and "pass" not in stream.getvalue()


CONFIG = """\
models:
  - name: test-model
    upstream: {kind: tgi, url: "${TGI_URL}", token: "${HF_TOKEN}", retries: 0}
    chat_template: chatml
server:
  api_keys_env: PROXY_KEYS
  log_format: json
  log_level: debug
"""
SECRETS = {"token": "hf_upstreamTOKENsecret", "key": "sk-proxyKEYsecret", "wrong": "sk-presentedWRONGsecret"}


def test_console_script_logs_json_lines_with_ids_and_no_secrets(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    fake = FakeTGI()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with LoopbackServer(fake.app) as upstream:
        env = {**os.environ, "TGI_URL": upstream.url, "HF_TOKEN": SECRETS["token"], "PROXY_KEYS": SECRETS["key"]}
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(config), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_health(url, process)
            good = {"authorization": f"Bearer {SECRETS['key']}"}
            body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 3}
            responses = [
                httpx.post(f"{url}/v1/chat/completions", json=body, headers=good),
                httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=good),
                httpx.post(
                    f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {SECRETS['wrong']}"}
                ),
            ]
            fake.fail_status = 503
            responses.append(httpx.post(f"{url}/v1/chat/completions", json=body, headers=good))
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    assert [response.status_code for response in responses] == [200, 200, 401, 503]
    text = stderr.decode()
    entries = [orjson.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert any(entry["logger"].startswith("uvicorn") for entry in entries)
    access = [entry for entry in entries if entry["logger"] == "server.access" and entry["path"] != "/health"]
    assert [entry["request_id"] for entry in access] == [response.headers["x-request-id"] for response in responses]
    assert [entry["status"] for entry in access] == [200, 200, 401, 503]
    for secret in SECRETS.values():
        assert secret not in text
    assert PROMPT not in text


def wait_for_health(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"the proxy did not start: {process.communicate()[1].decode()}")
