"""Seeds: OpenAI's are signed 64-bit integers, TGI's are u64; every seed a client may send reaches TGI valid."""

from __future__ import annotations

import httpx
import pytest

from fakes.tgi import FakeTGI
from tests.support import MODEL

MESSAGES = [{"role": "user", "content": "Count."}]


@pytest.mark.parametrize(
    ("seed", "sent"),
    [
        (-1, [2**64 - 1, 0]),  # wraps like two's complement, and choice 1's seed + 1 wraps the same way
        (-(2**63), [2**63, 2**63 + 1]),
        (2**64 - 1, [2**64 - 1, 0]),
        (5, [5, 6]),
    ],
)
async def test_every_allowed_seed_reaches_tgi_as_a_u64(
    client: httpx.AsyncClient, fake_tgi: FakeTGI, seed: int, sent: list[int]
) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1, "n": 2, "seed": seed}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert sorted(r.body["parameters"]["seed"] for r in fake_tgi.requests_to("/generate")) == sorted(sent)


@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**64])
async def test_a_seed_outside_the_range_is_refused_by_name(client: httpx.AsyncClient, seed: int) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1, "seed": seed}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"
