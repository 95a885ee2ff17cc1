"""Lambda Cloud against the local fake API: cents, no stop, terminate by POST, error codes."""

from __future__ import annotations

import pytest

from backends.providers.base import (
    InstanceNotFound,
    InstanceState,
    ProviderError,
    ProviderSettings,
    Secret,
    Unsupported,
)
from backends.providers.lambda_ import Lambda
from tests.support.provider_server import KEY, FakeLambda, ProviderServer, Reply, lambda_instance

ID = "0920582c7ff041399e34823a0be62549"


async def _no_sleep(delay: float) -> None:
    pass


@pytest.fixture
def fake():
    return FakeLambda({ID: lambda_instance(ID)})


@pytest.fixture
def server(fake):
    with ProviderServer(fake) as srv:
        yield srv


def provider(server, key: str = KEY) -> Lambda:
    return Lambda(ProviderSettings(api_url=server.url, key=Secret(key)), sleep=_no_sleep)


async def test_list_reads_integer_cents_as_dollars(server):
    async with provider(server) as lam:
        (info,) = await lam.list()
    (req,) = server.requests
    assert (req.method, req.path, req.body) == ("GET", "/api/v1/instances", b"")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert (info.id, info.state, info.raw_status) == (ID, InstanceState.RUNNING, "active")
    assert info.price_per_hour == 2.49
    assert (info.ssh_host, info.ssh_port, info.ssh_user) == ("198.51.100.2", 22, "ubuntu")
    assert (info.gpu_name, info.gpu_count, info.started_at) == ("H100 (80 GB PCIe)", 1, None)


async def test_get_and_not_found_by_lambdas_code(server):
    async with provider(server) as lam:
        info = await lam.get(ID)
        with pytest.raises(InstanceNotFound) as err:
            await lam.get("nope")
    assert info.name == "train-01"
    assert [r.path for r in server.requests] == [f"/api/v1/instances/{ID}", "/api/v1/instances/nope"]
    assert (err.value.status, err.value.code) == (404, "global/object-does-not-exist")
    assert str(err.value) == "lambda: Specified instance does not exist. (HTTP 404, global/object-does-not-exist)"


async def test_stop_refuses_without_calling_the_api(server):
    async with provider(server) as lam:
        assert lam.capabilities.can_stop is False
        with pytest.raises(Unsupported) as err:
            await lam.stop(ID)
    assert server.requests == []
    assert "Lambda has no stop" in str(err.value)


async def test_terminate_posts_the_instance_ids(server):
    async with provider(server) as lam:
        await lam.terminate(ID)
        assert (await lam.get(ID)).state == InstanceState.TERMINATING
        assert (await lam.get(ID)).state == InstanceState.TERMINATED
        with pytest.raises(InstanceNotFound):
            await lam.terminate("nope")
    post = server.requests[0]
    assert (post.method, post.path, post.json) == ("POST", "/api/v1/instance-operations/terminate",
                                                   {"instance_ids": [ID]})


async def test_preempted_is_gone_and_not_by_you(server, fake):
    fake.instances[ID]["status"] = "preempted"
    async with provider(server) as lam:
        info = await lam.get(ID)
    assert (info.state, info.preempted, info.raw_status) == (InstanceState.TERMINATED, True, "preempted")


async def test_a_bad_key_and_a_provider_error_keep_lambdas_code(server):
    server.push("GET", f"/api/v1/instances/{ID}", Reply(503, {"error": {
        "code": "provider/internal-unavailable", "message": "upstream down", "suggestion": "try later"}}))
    lam = Lambda(ProviderSettings(api_url=server.url, key=Secret(KEY)), sleep=_no_sleep)
    lam.client.retries = 0
    with pytest.raises(ProviderError) as err:
        await lam.get(ID)
    await lam.aclose()
    assert (err.value.status, err.value.code, err.value.message) == (
        503, "provider/internal-unavailable", "upstream down (try later)")
    async with provider(server, key="bad-key-0000000000") as lam:
        with pytest.raises(ProviderError) as err:
            await lam.list()
    assert (err.value.status, err.value.code) == (401, "global/invalid-api-key")
