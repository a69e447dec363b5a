"""Schemathesis against the app's own OpenAPI schema: every operation, valid and invalid inputs, sent over a
real socket with the fake TGI behind the proxy (so valid requests really generate). Never a 5xx, and every
error body is OpenAI's envelope with all four keys. Bounded and deterministic: MAX_EXAMPLES per operation and
mode, derandomized, no example database.

Schemathesis's own pytest plugin (`from_fixture(...).parametrize()`) does not run on pytest 9.2 (it reads the
removed `Function._nodeid`), so the operations are parametrized here and each one's strategy is driven by
Hypothesis directly; the checks are Schemathesis's.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from server.app import create_app
from server.config import Settings
from tests.support import MODEL, Live

pytestmark = pytest.mark.sockets

MAX_EXAMPLES = 100
Operation = APIOperation[Any, Any, Any, Any]


def published_operations() -> list[Operation]:
    """The operations in the schema the app serves at /openapi.json (it does not depend on the models), with
    `model` narrowed to the served names so valid bodies reach the upstream instead of a 404."""
    app = create_app(Settings.model_validate({"models": []}))
    document = app.openapi()
    for path in ("/v1/chat/completions", "/v1/completions"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["model"] = {"type": "string", "enum": [MODEL, "test-alias"]}
    results = list(schemathesis.openapi.from_dict(document).get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), results  # every operation's schema is usable
    return operations


OPERATIONS = published_operations()
# Invalid inputs need something to violate: the request bodies (the GETs take none, or a free-form string).
CASES = [(operation, GenerationMode.POSITIVE) for operation in OPERATIONS] + [
    (operation, GenerationMode.NEGATIVE) for operation in OPERATIONS if operation.body
]


def test_every_endpoint_is_fuzzed() -> None:
    labels = {operation.label for operation in OPERATIONS}
    assert labels == {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "GET /v1/models",
        "GET /v1/models/{model_id}",
        "GET /health",
        "GET /ready",
    }


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=[f"{op.label} {mode.value}" for op, mode in CASES])
def test_no_server_errors_and_every_error_enveloped(live: Live, operation: Operation, mode: GenerationMode) -> None:
    statuses: list[int] = []
    session = requests.Session()
    session.trust_env = False  # no proxy variables between the fuzzer and the loopback server

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=live.url, session=session, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, response.text
            assert isinstance(error["message"], str) and error["message"], response.text

    try:
        check()
    finally:
        session.close()
    if mode is GenerationMode.POSITIVE and operation.body:
        assert 200 in statuses  # valid bodies reached the fake TGI and came back as answers, not just errors
