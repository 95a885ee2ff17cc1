"""TensorDock, Thunder Compute and Crusoe against the local fake API (defensive parsers)."""

from __future__ import annotations

import pytest

from backends.providers import crusoe
from backends.providers.base import (
    InstanceNotFound,
    InstanceState,
    ProviderError,
    ProviderSettings,
    Secret,
    Unsupported,
)
from backends.providers.crusoe import Crusoe
from backends.providers.tensordock import TensorDock
from backends.providers.thunder import Thunder
from tests.support.provider_server import (
    KEY,
    FakeCrusoe,
    FakeTensorDock,
    FakeThunder,
    ProviderServer,
    Reply,
    crusoe_vm,
    tensordock_instance,
    thunder_instance,
)


async def _no_sleep(delay: float) -> None:
    pass


def settings(server, **options) -> ProviderSettings:
    return ProviderSettings(api_url=server.url, key=Secret(KEY), options=options)


# --- TensorDock -----------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["data", "attributes", "flat"])
async def test_tensordock_reads_every_documented_body_shape(wrap):
    with ProviderServer(FakeTensorDock({"td-1": tensordock_instance()}, wrap=wrap)) as server:
        async with TensorDock(settings(server), sleep=_no_sleep) as td:
            info = await td.get("td-1")
            listed = await td.list()
    assert (info.id, info.state, info.price_per_hour) == ("td-1", InstanceState.RUNNING, 0.55)
    assert (info.ssh_host, info.ssh_port, info.ssh_user) == ("198.51.100.77", 22022, None)
    assert (info.gpu_name, info.gpu_count) == ("geforcertx4090-pcie-24gb", 1)
    assert [i.id for i in listed] == ["td-1"]
    assert server.requests[0].path == "/api/v2/instances/td-1"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_tensordock_stop_delete_and_error_inside_a_200():
    fake = FakeTensorDock({"td-1": tensordock_instance()})
    with ProviderServer(fake) as server:
        server.push("POST", "/api/v2/instances/td-1/stop", Reply(200, {"error": "Hostnode unavailable", "status": 400}))
        async with TensorDock(settings(server), sleep=_no_sleep) as td:
            with pytest.raises(ProviderError) as err:
                await td.stop("td-1")
            await td.stop("td-1")
            assert (await td.get("td-1")).state == InstanceState.STOPPING
            assert (await td.get("td-1")).state == InstanceState.STOPPED
            await td.terminate("td-1")
            with pytest.raises(InstanceNotFound):
                await td.terminate("td-404")
    assert err.value.message == "Hostnode unavailable"
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/api/v2/instances/td-1/stop"), ("POST", "/api/v2/instances/td-1/stop"),
        ("GET", "/api/v2/instances/td-1"), ("GET", "/api/v2/instances/td-1"),
        ("DELETE", "/api/v2/instances/td-1"), ("DELETE", "/api/v2/instances/td-404")]


def test_tensordock_port_forwards_as_a_map_and_gpus_as_a_list():
    from backends.providers.tensordock import instance_from_api

    info = instance_from_api({"id": "x", "status": "stoppeddisassociated", "ipAddress": "198.51.100.1",
                              "portForwards": {"22": 41000}, "resources": {"gpus": [{"v0Name": "a100", "count": 2}]}})
    assert (info.state, info.ssh_port, info.gpu_name, info.gpu_count) == (InstanceState.STOPPED, 41000, "a100", 2)


# --- Thunder --------------------------------------------------------------------------


async def test_thunder_lists_an_object_keyed_by_id_and_gets_by_filtering():
    fake = FakeThunder({"0": thunder_instance(), "3": thunder_instance("uuid-3", "STOPPED")})
    with ProviderServer(fake) as server:
        async with Thunder(settings(server), sleep=_no_sleep) as th:
            listed = await th.list()
            by_uuid = await th.get("uuid-3")
            with pytest.raises(InstanceNotFound):
                await th.get("9")
    assert [(i.id, i.state) for i in listed] == [("0", InstanceState.RUNNING), ("3", InstanceState.STOPPED)]
    first = listed[0]
    assert (first.ssh_host, first.ssh_port, first.ssh_user, first.gpu_count) == ("203.0.113.40", 30022, "ubuntu", 1)
    assert by_uuid.id == "3"
    assert {(r.method, r.path) for r in server.requests} == {("GET", "/v1/instances/list")}
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_thunder_has_no_stop_and_deletes_by_post():
    fake = FakeThunder({"0": thunder_instance()})
    with ProviderServer(fake) as server:
        async with Thunder(settings(server), sleep=_no_sleep) as th:
            with pytest.raises(Unsupported) as err:
                await th.stop("0")
            await th.terminate("0")
            with pytest.raises(InstanceNotFound) as missing:
                await th.terminate("5")
    assert "no stop" in str(err.value)
    post = server.requests[0]
    assert (post.method, post.path, post.body) == ("POST", "/v1/instances/0/delete", b"")
    assert (missing.value.code, missing.value.message) == ("not_found", "instance not found")


async def test_thunder_401_is_its_own_error_shape():
    with ProviderServer(FakeThunder({})) as server:
        async with Thunder(ProviderSettings(api_url=server.url, key=Secret("bad-token-0000")), sleep=_no_sleep) as th:
            with pytest.raises(ProviderError) as err:
                await th.list()
    assert (err.value.status, err.value.code, err.value.message) == (401, "unauthorized", "invalid token")


# --- Crusoe ---------------------------------------------------------------------------

SECRET = "c2VjcmV0LWtleS1mb3ItdGVzdHM"  # base64url, as Crusoe issues them


def test_crusoe_signature_is_hmac_sha256_over_path_query_method_time():
    import base64
    import hashlib
    import hmac

    expected = base64.urlsafe_b64encode(hmac.new(
        base64.urlsafe_b64decode(SECRET + "="), b"/v1/p\na=1&b=2\nGET\n2026-01-01T00:00:00Z\n", hashlib.sha256,
    ).digest()).decode().rstrip("=")
    assert crusoe.signature(SECRET, "/v1/p", "b=2&a=1", "get", "2026-01-01T00:00:00Z") == expected


async def test_crusoe_signs_every_request_and_reads_vms():
    fake = FakeCrusoe({"vm-1": crusoe_vm()})
    with ProviderServer(fake) as server:
        s = ProviderSettings(api_url=server.url, key=Secret(SECRET), options={"project": "proj-1", "access_key_id": "AKID"})
        async with Crusoe(s, sleep=_no_sleep) as cr:
            info = await cr.get("vm-1")
            await cr.stop("vm-1")
            await cr.get("vm-1")
            assert (await cr.get("vm-1")).state == InstanceState.STOPPED
            await cr.terminate("vm-1")
            listed = await cr.list()
    assert (info.state, info.ssh_host, info.ssh_user, info.interruptible) == (
        InstanceState.RUNNING, "203.0.113.55", "ubuntu", False)
    patch = server.requests[1]
    assert (patch.method, patch.path, patch.json) == (
        "PATCH", "/v1/projects/proj-1/compute/vms/instances/vm-1", {"action": "STOP"})
    for req in server.requests:
        assert req.headers["authorization"].startswith("Bearer 1.0:AKID:")
        assert SECRET not in req.headers["authorization"]
    assert server.requests[4].method == "DELETE"
    assert listed[0].state == InstanceState.TERMINATING


async def test_crusoe_without_project_says_so():
    cr = Crusoe(ProviderSettings(key=Secret(SECRET), options={"access_key_id": "AKID"}))
    with pytest.raises(ProviderError) as err:
        await cr.list()
    await cr.aclose()
    assert "set project:" in str(err.value)
