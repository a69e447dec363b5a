"""`GET /metrics` after real requests over real sockets, parsed with prometheus_client's own parser; and the
`x-proxy-overhead-ms` header."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from tests.support import MODEL, SettingsFactory

P = "hf_openai_proxy_"


class Scrape:
    def __init__(self, text: str) -> None:
        self.families: dict[str, Metric] = {family.name: family for family in text_string_to_metric_families(text)}

    def value(self, sample_name: str, **labels: str) -> float:
        family = self.families[sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
        found = [s.value for s in family.samples if s.name == sample_name and labels.items() <= s.labels.items()]
        assert found, f"no sample {sample_name} with {labels}"
        return sum(found)


def scrape_until(url: str, ready: Callable[[Scrape], bool]) -> Scrape:
    """The access middleware counts a request just after its last byte leaves, so a scrape sent right after a
    response can run first: scrape again (briefly) until the expected requests are in."""
    deadline = time.monotonic() + 5
    while True:
        scrape = Scrape(httpx.get(f"{url}/metrics").text)
        if ready(scrape) or time.monotonic() > deadline:
            return scrape
        time.sleep(0.01)


@pytest.fixture
def proxy(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> Iterator[str]:
    with LoopbackServer(fake_tgi.app) as upstream:
        with LoopbackServer(create_app(make_settings(upstream.url))) as server:
            yield server.url


def test_metrics_after_stream_non_stream_and_failing_requests(proxy: str, fake_tgi: FakeTGI) -> None:
    with openai.OpenAI(base_url=f"{proxy}/v1", api_key="unused", max_retries=0) as client:
        whole = client.completions.create(model=MODEL, prompt="one two three", max_tokens=3)
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello there"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        streamed_usage = [chunk.usage for chunk in stream if chunk.usage is not None][0]
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="no-such-model", prompt="x")
        fake_tgi.error_event_after = 2
        with pytest.raises(openai.APIError, match="boom"):
            for _ in client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pass
    assert whole.usage is not None and streamed_usage is not None

    scrape = scrape_until(
        proxy,
        lambda s: (
            s.value(f"{P}requests_total", endpoint="/v1/completions") >= 2
            and s.value(f"{P}requests_total", endpoint="/v1/chat/completions") >= 2
        ),
    )
    model = {"model": MODEL}
    assert scrape.value(f"{P}requests_total", endpoint="/v1/completions", status="200", **model) == 1
    assert scrape.value(f"{P}requests_total", endpoint="/v1/chat/completions", status="200", **model) == 2
    assert scrape.value(f"{P}requests_total", endpoint="/v1/completions", status="404", model="") == 1
    assert scrape.value(f"{P}upstream_errors_total", kind="upstream_generation_error", **model) == 1
    assert scrape.value(f"{P}prompt_tokens_total", **model) == whole.usage.prompt_tokens + streamed_usage.prompt_tokens
    # the failing stream sent two tokens before its error event, and never its final details
    completion = whole.usage.completion_tokens + streamed_usage.completion_tokens + 2
    assert scrape.value(f"{P}completion_tokens_total", **model) == completion
    assert scrape.value(f"{P}upstream_request_duration_seconds_count", mode="generate", **model) == 1
    assert scrape.value(f"{P}upstream_request_duration_seconds_count", mode="stream", **model) == 2
    assert scrape.value(f"{P}time_to_first_token_seconds_count", **model) == 2
    assert scrape.value(f"{P}upstream_requests_in_flight", **model) == 0
    assert scrape.value(f"{P}queued_requests", **model) == 0
    assert scrape.value(f"{P}requests_in_flight") == 1  # the scrape itself
    # the proxy's own share of a request can never exceed the whole request
    overhead = scrape.value(f"{P}overhead_seconds_sum")
    assert 0 < overhead <= scrape.value(f"{P}request_duration_seconds_sum")


def test_overhead_header_is_on_every_response(proxy: str) -> None:
    responses = [
        httpx.post(f"{proxy}/v1/completions", json={"model": MODEL, "prompt": "a b", "max_tokens": 2}),
        httpx.post(f"{proxy}/v1/completions", json={"model": MODEL, "prompt": "a", "stream": True}),
        httpx.post(f"{proxy}/v1/completions", json={"model": "missing", "prompt": "a"}),
        httpx.get(f"{proxy}/no-such-path"),
        httpx.get(f"{proxy}/metrics"),
    ]
    for response in responses:
        value = response.headers["x-proxy-overhead-ms"]
        assert float(value) >= 0 and value == f"{float(value):.3f}"
        assert response.headers["x-request-id"]


def test_unrouted_paths_share_one_label_and_openmetrics_is_negotiated(proxy: str) -> None:
    for path in ("/wp-login.php", "/.env", "/v2/anything"):
        assert httpx.get(f"{proxy}{path}").status_code == 404
    scrape = scrape_until(proxy, lambda s: s.value(f"{P}requests_total", endpoint="other") >= 3)
    assert scrape.value(f"{P}requests_total", endpoint="other", status="404") == 3
    assert not any("wp-login" in str(sample.labels) for family in scrape.families.values() for sample in family.samples)
    openmetrics = httpx.get(f"{proxy}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


async def test_each_app_has_its_own_registry(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    apps = [create_app(make_settings(), upstream_transport=httpx.ASGITransport(fake_tgi.app)) for _ in range(2)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://a.test") as first:
        await first.get("/health")
        await first.get("/health")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[1]), base_url="http://b.test") as second:
        text = (await second.get("/metrics")).text
    assert 'endpoint="/health"' not in text


async def test_requests_refused_before_routing_keep_their_endpoint(
    fake_tgi: FakeTGI, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(server={"api_keys": ["sk-k"]}), upstream_transport=httpx.ASGITransport(fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        assert (await http.post("/v1/chat/completions", json={})).status_code == 401
        assert (await http.get("/v1/models")).status_code == 401
        scrape = Scrape((await http.get("/metrics")).text)
    for endpoint in ("/v1/chat/completions", "/v1/models"):
        assert scrape.value(f"{P}requests_total", endpoint=endpoint, status="401", model="") == 1
