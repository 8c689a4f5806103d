"""The demo CRM's token bucket: on a fake clock, then over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import requests

from crmsync.demo_server import DEFAULT_PASSWORD, DEFAULT_USERNAME, DemoServer
from crmsync.demo_server.rate_limit import TokenBucket

AUTH = (DEFAULT_USERNAME, DEFAULT_PASSWORD)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_admits_its_burst_then_one_request_per_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=3, clock=clock)

    assert [bucket.admit().allowed for _ in range(4)] == [True, True, True, False]
    clock.now += 0.2  # 0.8 of a token
    assert not bucket.admit().allowed
    clock.now += 0.05
    assert bucket.admit().allowed
    clock.now += 10  # refills to the burst, no further
    assert [bucket.admit().allowed for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_the_whole_seconds_until_a_token_is_free_rounded_up() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.4, burst=1, clock=clock)
    bucket.admit()

    assert bucket.admit().retry_after == 3  # 2.5 s to the next token
    clock.now += 2.0
    assert bucket.admit().retry_after == 1  # 0.5 s
    clock.now += 0.6
    assert bucket.admit().allowed


@pytest.mark.parametrize(
    ("style", "prefixes"),
    [("x", ["X-RateLimit-"]), ("ietf", ["RateLimit-"]), ("both", ["X-RateLimit-", "RateLimit-"])],
)
def test_the_headers_tell_the_burst_the_tokens_left_and_the_seconds_to_a_full_bucket(
    style: str, prefixes: list[str]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=10, headers=style, clock=clock)
    for _ in range(4):
        bucket.admit()
    clock.now += 0.25

    headers = bucket.admit().headers

    expected = {"Limit": "10", "Remaining": "5", "Reset": "3"}  # 5.5 tokens, 4.5 missing
    assert headers == {
        prefix + name: value for prefix in prefixes for name, value in expected.items()
    }


def test_without_a_header_style_the_bucket_sends_no_headers() -> None:
    assert TokenBucket(rate=1, burst=1, clock=FakeClock()).admit().headers == {}


@pytest.mark.parametrize("bad", [{"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}])
def test_a_bucket_that_could_never_admit_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(bad["rate"], int(bad["burst"]))


@pytest.fixture
def limited() -> Iterator[DemoServer]:
    bucket = TokenBucket(rate=1, burst=2, headers="both")
    with DemoServer(sizes={"contacts": 5}, rate_limit=bucket) as server:
        yield server


def get(server: DemoServer, path: str = "/contacts") -> requests.Response:
    return requests.get(f"{server.base_url}{path}", auth=AUTH, timeout=5)


def test_over_http_a_request_past_the_burst_gets_a_429_in_the_contracts_shape(
    limited: DemoServer,
) -> None:
    first, second, third = get(limited), get(limited), get(limited)

    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["X-RateLimit-Remaining"] == first.headers["RateLimit-Remaining"] == "1"
    assert second.headers["RateLimit-Limit"] == "2"
    assert third.headers["Retry-After"] == "1"
    assert third.headers["RateLimit-Remaining"] == "0"
    assert orjson.loads(third.content)["error"]["code"] == "rate_limited"
    assert [entry.status for entry in limited.requests] == [200, 200, 429]


def test_over_http_the_control_api_sets_and_lifts_the_limit(crm_server: DemoServer) -> None:
    def set_limit(body: dict[str, object]) -> None:
        url = f"{crm_server.base_url}/_control/rate_limit"
        requests.post(url, json=body, auth=AUTH, timeout=5).raise_for_status()

    set_limit({"rate": 0.5, "burst": 1, "headers": "x"})
    assert [get(crm_server).status_code for _ in range(2)] == [200, 429]
    set_limit({"rate": 0})
    assert [get(crm_server).status_code for _ in range(3)] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in get(crm_server).headers


@pytest.fixture
def crm_server() -> Iterator[DemoServer]:
    with DemoServer(sizes={"contacts": 5}) as server:
        yield server
