"""Vast.ai against the local fake API: paths with slashes, padded strings, plain-text 429s."""

from __future__ import annotations

import pytest

from backends.providers.base import InstanceNotFound, InstanceState, ProviderError, ProviderSettings, Secret
from backends.providers.vastai import VastAI
from tests.support.provider_server import KEY, FakeVast, ProviderServer, Reply, vast_instance


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def fake():
    return FakeVast({"123": vast_instance(123)})


@pytest.fixture
def server(fake):
    with ProviderServer(fake) as srv:
        yield srv


def provider(server, sleeps=None, key: str = KEY) -> VastAI:
    return VastAI(ProviderSettings(api_url=server.url, key=Secret(key)), sleep=sleeps or Sleeps())


async def test_get_unwraps_the_singular_instance_and_strips_padding(server):
    async with provider(server) as vast:
        info = await vast.get("123")
    (req,) = server.requests
    assert (req.method, req.path, req.query, req.body) == ("GET", "/api/v0/instances/123/", {"owner": ["me"]}, b"")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert (info.id, info.name, info.state, info.raw_status) == ("123", "train-01", InstanceState.RUNNING, "running")
    # Direct TCP preferred: public_ipaddr (trailing "\n" stripped) and HostPort (a string).
    assert (info.ssh_host, info.ssh_port, info.ssh_user) == ("198.51.100.20", 40022, "root")
    assert (info.price_per_hour, info.started_at) == (0.8412, 1767225600.5)
    assert (info.gpu_name, info.gpu_count, info.preempted, info.interruptible) == ("RTX 4090", 2, False, False)


async def test_without_a_mapped_22_the_proxy_gateway_is_used(server, fake):
    fake.instances["123"]["ports"] = None
    async with provider(server) as vast:
        info = await vast.get("123")
    assert (info.ssh_host, info.ssh_port) == ("ssh7.vast.ai", 31234)


async def test_null_under_instances_is_not_found(server):
    async with provider(server) as vast:
        with pytest.raises(InstanceNotFound) as err:
            await vast.get("999")
    assert "no instance 999" in str(err.value)


async def test_an_outbid_bid_instance_is_preempted_but_a_user_stop_is_not(server, fake):
    fake.instances["123"].update(is_bid=True, actual_status="stopped", intended_status="running")
    fake.instances["7"] = vast_instance(7, "stopped", is_bid=True, intended="stopped")
    async with provider(server) as vast:
        outbid = await vast.get("123")
        stopped = await vast.get("7")
    assert (outbid.state, outbid.preempted, outbid.raw_status) == (InstanceState.STOPPED, True, "stopped (intended running)")
    assert (stopped.state, stopped.preempted) == (InstanceState.STOPPED, False)


async def test_list_follows_next_token_pages(server, fake):
    fake.instances.clear()
    fake.instances.update({str(i): vast_instance(i) for i in range(1, 31)})
    async with provider(server) as vast:
        found = await vast.list()
    assert [i.id for i in found] == [str(i) for i in range(1, 31)]
    first, second = server.requests
    assert (first.method, first.path, first.query) == ("GET", "/api/v1/instances/", {"limit": ["25"]})
    assert second.query == {"limit": ["25"], "after_token": ["25"]}


async def test_stop_puts_the_stopped_state(server):
    async with provider(server) as vast:
        await vast.stop("123")
        await vast.get("123")
        assert (await vast.get("123")).state == InstanceState.STOPPED
    put = server.requests[0]
    assert (put.method, put.path, put.json) == ("PUT", "/api/v0/instances/123/", {"state": "stopped"})
    assert put.headers["content-type"] == "application/json"


async def test_destroy_sends_an_empty_json_body_and_unknown_is_not_found(server):
    async with provider(server) as vast:
        await vast.terminate("123")
        with pytest.raises(InstanceNotFound) as err:
            await vast.terminate("999")
    delete, missing = server.requests
    assert (delete.method, delete.path, delete.body) == ("DELETE", "/api/v0/instances/123/", b"{}")
    assert (err.value.status, err.value.code, err.value.message) == (404, "no_such_instance", "Instance not found")
    assert missing.path == "/api/v0/instances/999/"


async def test_success_false_with_http_200_is_a_failure(server):
    server.push("PUT", "/api/v0/instances/123/", Reply(200, {"success": False, "error": "missing_billing",
                                                              "msg": "add a payment method"}))
    async with provider(server) as vast:
        with pytest.raises(ProviderError) as err:
            await vast.stop("123")
    assert (err.value.code, err.value.message) == ("missing_billing", "add a payment method")


async def test_plain_text_429_without_retry_after_backs_off_and_retries(server):
    too_fast = Reply(429, "API requests too frequent endpoint threshold=1.0")
    server.push("GET", "/api/v0/instances/123/", too_fast, too_fast)
    sleeps = Sleeps()
    async with provider(server, sleeps) as vast:
        assert (await vast.get("123")).state == InstanceState.RUNNING
    assert sleeps.delays == [0.5, 1.0]


async def test_plain_text_429_that_never_ends_says_what_vast_said(server):
    server.push("DELETE", "/api/v0/instances/123/", *[Reply(429, "API requests too frequent endpoint threshold=3.0")] * 5)
    async with provider(server) as vast:
        with pytest.raises(ProviderError) as err:
            await vast.terminate("123")
    assert (err.value.status, err.value.message) == (429, "API requests too frequent endpoint threshold=3.0")


async def test_a_bad_key_is_vasts_auth_error(server):
    async with provider(server, key="wrong-key-123456") as vast:
        with pytest.raises(ProviderError) as err:
            await vast.get("123")
    assert (err.value.status, err.value.code, err.value.message) == (401, "auth_error", "Invalid user key")
