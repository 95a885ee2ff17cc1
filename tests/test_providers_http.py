"""The shared provider HTTP client: retries, Retry-After, error shapes, no key leaks."""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from backends.providers.base import InstanceNotFound, ProviderError, ProviderUnavailable, Secret
from backends.providers.http import ApiClient, BearerAuth, error_from_body, retry_after_seconds, segment
from tests.support.net import refused_port
from tests.support.provider_server import KEY, ProviderServer, Reply


class Sleeps:
    """An injectable sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def server():
    with ProviderServer() as srv:
        yield srv


def client(url: str, sleeps: Sleeps, **kw) -> ApiClient:
    key = Secret(KEY)
    return ApiClient("testprov", url, auth=BearerAuth(key), secrets=(key,), sleep=sleeps, **kw)


async def test_sends_the_key_as_a_bearer_header_and_json_body(server):
    server.push("POST", "/v1/things", Reply(200, {"ok": True}))
    api = client(server.url, Sleeps())
    assert await api.json("POST", "/v1/things", json={"a": 1}, params={"q": "x y"}) == {"ok": True}
    await api.aclose()
    (req,) = server.requests
    assert (req.method, req.path, req.query) == ("POST", "/v1/things", {"q": ["x y"]})
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"
    assert req.headers["user-agent"] == "gpuctl"
    assert req.json == {"a": 1}


async def test_429_with_retry_after_seconds_is_honoured(server):
    server.push("GET", "/x", Reply(429, {"title": "Too Many Requests", "status": 429, "detail": "slow down"},
                                   headers={"Retry-After": "3"}), Reply(200, {"n": 1}))
    sleeps = Sleeps()
    api = client(server.url, sleeps)
    assert await api.json("GET", "/x") == {"n": 1}
    await api.aclose()
    assert sleeps.delays == [3.0]
    assert len(server.requests) == 2


async def test_429_with_an_http_date_retry_after(server):
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    server.push("GET", "/x", Reply(429, "", headers={"Retry-After": when}), Reply(200, {}))
    sleeps = Sleeps()
    api = client(server.url, sleeps)
    await api.json("GET", "/x")
    await api.aclose()
    assert len(sleeps.delays) == 1 and 2.0 <= sleeps.delays[0] <= 6.0


async def test_retry_after_beyond_the_cap_fails_at_once_saying_how_long(server):
    server.push("GET", "/x", Reply(429, {"title": "Too Many Requests", "status": 429, "detail": "quota"},
                                   headers={"Retry-After": "3600"}))
    sleeps = Sleeps()
    api = client(server.url, sleeps, max_retry_after=20)
    with pytest.raises(ProviderError) as info:
        await api.json("GET", "/x")
    await api.aclose()
    assert sleeps.delays == []
    assert info.value.status == 429
    assert "asks to wait 3600s" in str(info.value)


async def test_429_without_retry_after_backs_off_exponentially_then_gives_up(server):
    # Vast: plain text, no Retry-After.
    server.push("GET", "/x", *[Reply(429, "API requests too frequent endpoint threshold=1.0")] * 4)
    sleeps = Sleeps()
    api = client(server.url, sleeps, retries=3, backoff=0.5)
    with pytest.raises(ProviderError) as info:
        await api.json("GET", "/x")
    await api.aclose()
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert len(server.requests) == 4
    assert (info.value.status, info.value.code) == (429, None)
    assert info.value.message == "API requests too frequent endpoint threshold=1.0"


async def test_5xx_is_retried_and_4xx_is_not(server):
    server.push("GET", "/x", Reply(503, "upstream"), Reply(502, "<html>bad gateway</html>"), Reply(200, {"ok": 1}))
    server.push("GET", "/y", Reply(409, {"title": "Conflict", "status": 409, "detail": "not allowed"}))
    sleeps = Sleeps()
    api = client(server.url, sleeps)
    assert await api.json("GET", "/x") == {"ok": 1}
    with pytest.raises(ProviderError) as info:
        await api.json("GET", "/y")
    await api.aclose()
    assert sleeps.delays == [0.5, 1.0]
    assert len(server.calls(path="/y")) == 1
    assert str(info.value) == "testprov: not allowed (HTTP 409, Conflict)"


async def test_404_is_instance_not_found(server):
    server.push("GET", "/x", Reply(404, {"error": {"code": "global/object-does-not-exist", "message": "gone"}}))
    api = client(server.url, Sleeps())
    with pytest.raises(InstanceNotFound) as info:
        await api.json("GET", "/x")
    await api.aclose()
    assert (info.value.status, info.value.code, info.value.message) == (404, "global/object-does-not-exist", "gone")


async def test_unreachable_server_is_provider_unavailable_after_retries():
    sleeps = Sleeps()
    api = client(f"http://127.0.0.1:{refused_port()}", sleeps, retries=2)
    with pytest.raises(ProviderUnavailable) as info:
        await api.json("GET", "/x")
    await api.aclose()
    assert sleeps.delays == [0.5, 1.0]
    assert "cannot reach 127.0.0.1" in str(info.value)


async def test_redirects_are_not_followed_so_the_key_stays_home(server):
    server.push("GET", "/x", Reply(302, "", headers={"Location": "http://198.51.100.1/steal"}))
    api = client(server.url, Sleeps())
    with pytest.raises(ProviderError) as info:
        await api.json("GET", "/x")
    await api.aclose()
    assert info.value.status == 302
    assert len(server.requests) == 1


async def test_the_key_never_appears_in_errors_reprs_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"title": "Unauthorized", "status": 401, "detail": f"key {KEY} is not valid", "errors": [f"got {KEY}"]}
    server.push("GET", "/x", Reply(503, f"upstream choked on {KEY}"), Reply(401, echo))
    key = Secret(KEY)
    api = ApiClient("testprov", server.url, auth=BearerAuth(key), secrets=(key,), sleep=Sleeps())
    with pytest.raises(ProviderError) as info:
        await api.json("GET", "/x")
    await api.aclose()
    texts = [str(info.value), repr(info.value), info.value.message, repr(api), repr(key), str(key),
             repr(BearerAuth(key)), caplog.text]
    assert all(KEY not in t for t in texts)
    assert "key *** is not valid" in info.value.message


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    # Lambda
    (404, '{"error":{"code":"global/object-does-not-exist","message":"Specified instance does not exist."}}',
     "global/object-does-not-exist", "Specified instance does not exist."),
    (401, '{"error":{"code":"global/invalid-api-key","message":"bad key","suggestion":"make a new one"}}',
     "global/invalid-api-key", "bad key (make a new one)"),
    # RunPod v2 problem+json
    (404, '{"title":"Not Found","status":404,"detail":"resource not found"}', "Not Found", "resource not found"),
    (400, '{"title":"Bad Request","status":400,"detail":"invalid","errors":["gpuCount: must be >= 1"]}',
     "Bad Request", "invalid: gpuCount: must be >= 1"),
    # RunPod GraphQL
    (200, '{"errors":[{"message":"Something went wrong","extensions":{"code":"INTERNAL"}}],"data":null}',
     "INTERNAL", "Something went wrong"),
    # Vast
    (400, '{"success":false,"error":"invalid_args","msg":"bad label"}', "invalid_args", "bad label"),
    (404, '{"success":false,"error":"no_such_instance"}', "no_such_instance", "no_such_instance"),
    (429, '{"detail":"API requests too frequent"}', None, "API requests too frequent"),
    (429, "API requests too frequent endpoint threshold=1.0", None, "API requests too frequent endpoint threshold=1.0"),
    # Thunder
    (401, '{"code":401,"error":"unauthorized","message":"invalid token"}', "unauthorized", "invalid token"),
    # TensorDock
    (400, '{"error":"Hostnode unavailable","status":400}', None, "Hostnode unavailable"),
    # Crusoe
    (404, '{"code":"not_found","error_id":"e1","message":"vm not found","reason":"x"}', "not_found", "vm not found"),
    # Bodies with nothing to say
    (502, "<html><body>Bad gateway</body></html>", None, "Bad Gateway"),
    (500, "", None, "Bad Gateway"),
])
def test_error_bodies_become_code_and_message(status, body, code, message):
    assert error_from_body(status, body, "Bad Gateway") == (code, message)


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(email.utils.formatdate(1000.0, usegmt=True), now=990.0) == 10.0
    assert retry_after_seconds(email.utils.formatdate(1000.0, usegmt=True), now=2000.0) == 0.0


def test_ids_cannot_escape_their_path_segment():
    assert segment("abc") == "abc"
    assert segment("../admin") == "..%2Fadmin"
    assert segment("..") == "%2E%2E"
    assert segment("a b?c#d") == "a%20b%3Fc%23d"
