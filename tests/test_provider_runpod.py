"""RunPod against the local fake API: REST v2 requests, GraphQL podType, error shapes."""

from __future__ import annotations

import pytest

from backends.providers.base import InstanceNotFound, InstanceState, ProviderError, ProviderSettings, Secret
from backends.providers.base import parse_time
from backends.providers.runpod import RunPod
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, Reply, runpod_pod


async def _no_sleep(delay: float) -> None:
    pass


@pytest.fixture
def fake():
    return FakeRunPod({"pod1": runpod_pod("pod1"), "pod2": runpod_pod("pod2", direct=False, name="proxied")},
                      pod_types={"pod1": "RESERVED", "pod2": "INTERRUPTABLE"})


@pytest.fixture
def server(fake):
    with ProviderServer(fake) as srv:
        yield srv


def provider(server, key: str = KEY) -> RunPod:
    return RunPod(ProviderSettings(api_url=server.url, key=Secret(key)), sleep=_no_sleep)


def assert_bearer(server) -> None:
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)


async def test_get_reads_state_price_uptime_ssh_and_gpu(server):
    async with provider(server) as rp:
        info = await rp.get("pod1")
    (req,) = server.requests
    assert (req.method, req.path, req.body) == ("GET", "/v2/pods/pod1", b"")
    assert_bearer(server)
    assert (info.id, info.state, info.raw_status, info.name) == ("pod1", InstanceState.RUNNING, "RUNNING", "train-01")
    assert (info.price_per_hour, info.uptime_s) == (3.28, 420.0)
    assert info.started_at == parse_time("2026-05-01T10:01:30Z")
    assert (info.ssh_host, info.ssh_port, info.ssh_user, info.ssh_proxied) == ("203.0.113.9", 40122, "root", False)
    assert (info.gpu_name, info.gpu_count, info.preempted) == ("NVIDIA A100 80GB PCIe", 2, False)


async def test_without_direct_tcp_the_proxy_endpoint_is_marked(server):
    async with provider(server) as rp:
        info = await rp.get("pod2")
    assert (info.ssh_host, info.ssh_port, info.ssh_user, info.ssh_proxied) == (
        "ssh.runpod.io", 22, "pod2-64410abc", True)


async def test_list_skips_graphql_while_nothing_is_stopped(server):
    async with provider(server) as rp:
        pods = await rp.list()
    assert [p.id for p in pods] == ["pod1", "pod2"]
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v2/pods")]


async def test_an_exited_interruptible_pod_is_preempted_via_graphql(server, fake):
    fake.instances["pod2"].update(status="EXITED", cost=0.0, runtime=None)
    async with provider(server) as rp:
        info = await rp.get("pod2")
    get, gql = server.requests
    assert (gql.method, gql.path) == ("POST", "/graphql")
    assert gql.headers["authorization"] == f"Bearer {KEY}"
    assert gql.json == {"query": 'query { pod(input: {podId: "pod2"}) { id podType desiredStatus } }'}
    assert (info.state, info.preempted, info.interruptible, info.uptime_s) == (InstanceState.STOPPED, True, True, None)


async def test_an_exited_reserved_pod_is_just_stopped(server, fake):
    fake.instances["pod1"]["status"] = "EXITED"
    async with provider(server) as rp:
        info = await rp.get("pod1")
        listed = await rp.list()
    assert (info.state, info.preempted, info.interruptible) == (InstanceState.STOPPED, False, False)
    assert [r.path for r in server.requests] == ["/v2/pods/pod1", "/graphql", "/v2/pods", "/graphql"]
    assert "myself" in server.requests[-1].json["query"]
    assert [(p.id, p.preempted) for p in listed] == [("pod1", False), ("pod2", False)]


async def test_graphql_errors_with_http_200_become_a_provider_error(server, fake):
    server.push("POST", "/graphql", Reply(200, {"errors": [{"message": "Something went wrong"}], "data": None}))
    fake.instances["pod2"]["status"] = "EXITED"
    async with provider(server) as rp:
        info = await rp.get("pod2")  # the pod is still reported, with a note
        with pytest.raises(ProviderError) as err:
            await rp.pod_type("nope")  # the fake answers an unknown id with an errors array
    assert (info.state, info.preempted, info.interruptible) == (InstanceState.STOPPED, False, None)
    assert "cannot tell whether it was interrupted" in info.note
    assert "Something went wrong" in info.note
    assert (err.value.status, err.value.message) == (200, "pod not found")


async def test_stop_posts_the_stop_action(server, fake):
    async with provider(server) as rp:
        await rp.stop("pod1")
        assert (await rp.get("pod1")).state == InstanceState.RUNNING  # the fake settles one read later
        assert (await rp.get("pod1")).state == InstanceState.STOPPED
    stop = server.requests[0]
    assert (stop.method, stop.path, stop.json) == ("POST", "/v2/pods/pod1/action", {"action": "stop"})
    assert stop.headers["content-type"] == "application/json"


async def test_a_refused_action_is_409_with_runpods_title(server, fake):
    fake.instances["pod1"]["status"] = "EXITED"
    async with provider(server) as rp:
        with pytest.raises(ProviderError) as err:
            await rp.stop("pod1")
    assert (err.value.status, err.value.code) == (409, "Conflict")
    assert "not allowed in status EXITED" in err.value.message


async def test_terminate_deletes_and_an_unknown_pod_is_not_found(server):
    async with provider(server) as rp:
        await rp.terminate("pod1")
        with pytest.raises(InstanceNotFound) as err:
            await rp.terminate("nope")
    first, second = server.requests
    assert (first.method, first.path, first.body) == ("DELETE", "/v2/pods/pod1", b"")
    assert (second.method, second.path) == ("DELETE", "/v2/pods/nope")
    assert (err.value.status, err.value.code, err.value.message) == (404, "Not Found", "resource not found")


async def test_a_bad_key_is_401_and_the_key_is_not_in_the_message(server):
    wrong = "rk-wrong-key-0123456789"
    async with provider(server, key=wrong) as rp:
        with pytest.raises(ProviderError) as err:
            await rp.list()
    assert (err.value.status, err.value.message) == (401, "missing bearer token")
    assert wrong not in str(err.value) and wrong not in repr(err.value)


async def test_rate_limit_with_retry_after_then_success(server):
    server.push("GET", "/v2/pods/pod1", Reply(429, {"title": "Too Many Requests", "status": 429,
                                                    "detail": "rate limit exceeded"}, headers={"Retry-After": "2"}))
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)

    rp = RunPod(ProviderSettings(api_url=server.url, key=Secret(KEY)), sleep=sleep)
    assert (await rp.get("pod1")).state == InstanceState.RUNNING
    await rp.aclose()
    assert delays == [2.0]


async def test_odd_ids_are_never_spliced_into_graphql(server):
    async with provider(server) as rp:
        assert await rp.pod_type('x") { id } myself { pods { id') is None
    assert server.requests == []
