"""RunPod: REST v2 for list, get, stop and terminate; GraphQL for the interruptible flag.

REST v2 (`https://api.runpod.io/v2/...`, official OpenAPI) has no field saying a pod
is interruptible (spot), so preemption needs GraphQL's `podType`. From outside, an
interrupted spot pod is `EXITED` with `podType == "INTERRUPTABLE"`; a user's own
stop of a spot pod looks the same, which is why the sessions layer remembers the
stops gpuctl made. GraphQL answers client errors with HTTP 200 and an `errors`
array; that is turned into a `ProviderError` like any other failure. A 2xx body that
is not a pod (or a pod list) where one belongs is an `UnreadableAnswer`, never an
empty account or an unknown pod.

SSH: `ssh.direct` (public IP and port, user root) when the pod exposes 22/tcp, else
`ssh.proxy` (`<token>@ssh.runpod.io`), an interactive shell only (no exec, no SFTP),
marked `ssh_proxied`.

The server root is `https://api.runpod.io`; runpod-python's `RUNPOD_API_BASE_URL`
overrides it (the sessions layer reads that variable, see the registry).
"""

from __future__ import annotations

import json
import re
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceState,
    ProviderError,
    as_dict,
    as_float,
    as_int,
    as_text,
    parse_time,
    shape,
)
from backends.providers.http import HttpProvider, segment

DEFAULT_URL = "https://api.runpod.io"

_STATES = {
    "PROVISIONING": InstanceState.STARTING,
    "STARTING": InstanceState.STARTING,
    "CREATED": InstanceState.STARTING,      # GraphQL desiredStatus, seen in older SkyPilot
    "RESTARTING": InstanceState.STARTING,
    "RUNNING": InstanceState.RUNNING,
    "EXITED": InstanceState.STOPPED,
    "PAUSED": InstanceState.STOPPED,
    "ERROR": InstanceState.ERROR,
    "TERMINATED": InstanceState.TERMINATED,
}
INTERRUPTIBLE = "INTERRUPTABLE"  # RunPod's spelling
_POD_ID = re.compile(r"[A-Za-z0-9_-]+")
_GQL_FIELDS = "id podType desiredStatus"


def _ssh(pod: dict[str, Any]) -> tuple[str | None, int | None, str | None, bool]:
    """(host, port, user, proxied): direct TCP first, else the proxy."""
    ssh = as_dict(pod.get("ssh"))
    direct = ssh.get("direct")
    if isinstance(direct, dict) and as_text(direct.get("host")):
        return (as_text(direct.get("host")), as_int(direct.get("port")) or 22,
                as_text(direct.get("username")) or "root", False)
    runtime = as_dict(pod.get("runtime"))
    for port in runtime.get("ports") or ():
        # The same rule as runpodctl: private port 22, TCP, on a public IP.
        if (isinstance(port, dict) and as_int(port.get("private", port.get("privatePort"))) == 22
                and port.get("type", "tcp") == "tcp" and port.get("isIpPublic", True) is not False
                and as_text(port.get("ip"))):
            return as_text(port["ip"]), as_int(port.get("public", port.get("publicPort"))), "root", False
    proxy = ssh.get("proxy")
    if isinstance(proxy, dict) and as_text(proxy.get("host")):
        return as_text(proxy.get("host")), as_int(proxy.get("port")) or 22, as_text(proxy.get("username")), True
    return None, None, None, False


def instance_from_v2(pod: dict[str, Any], pod_type: str | None = None, note: str | None = None) -> InstanceInfo:
    """An `InstanceInfo` from a v2 `Pod` object, plus GraphQL's podType when known."""
    raw = as_text(pod.get("status") or pod.get("desiredStatus"))
    state = _STATES.get((raw or "").upper(), InstanceState.UNKNOWN)
    interruptible = None if pod_type is None else pod_type == INTERRUPTIBLE
    if pod.get("interruptible") is not None:  # REST v1 shape, should a gateway serve it
        interruptible = bool(pod["interruptible"])
    host, port, user, proxied = _ssh(pod)
    gpu = as_dict(pod.get("gpu"))
    runtime = as_dict(pod.get("runtime"))
    running = state == InstanceState.RUNNING
    return InstanceInfo(
        id=str(pod.get("id")),
        state=state,
        raw_status=raw,
        name=as_text(pod.get("name")),
        preempted=state == InstanceState.STOPPED and interruptible is True,
        interruptible=interruptible,
        price_per_hour=as_float(pod.get("cost", pod.get("costPerHr"))),
        started_at=parse_time(pod.get("startedAt") or pod.get("lastStartedAt")) if running else None,
        uptime_s=as_float(runtime.get("uptime", runtime.get("uptimeInSeconds"))) if running else None,
        ssh_host=host,
        ssh_port=port,
        ssh_user=user,
        ssh_proxied=proxied,
        gpu_name=as_text(gpu.get("displayName") or gpu.get("id")),
        gpu_count=as_int(gpu.get("count")),
        note=note,
    )


class RunPod(HttpProvider):
    """RunPod pods through REST v2 (+ GraphQL for `podType`)."""

    type = "runpod"
    default_url = DEFAULT_URL
    capabilities = Capabilities(
        can_stop=True,
        stop_loses_data=True,
        stop_keeps="the volume disk (/workspace) and the pod itself, to start again later",
        stop_loses=("the container disk is wiped (everything outside /workspace); the volume disk "
                    "keeps billing; a restart can come up with zero GPUs if the host's GPU was taken"),
        teardown_destroys=("the pod, its container disk and its volume disk (/workspace); "
                           "only data on a network volume survives"),
    )

    async def list(self) -> list[InstanceInfo]:
        body = await self.client.json("GET", "/v2/pods", expect=(dict, list))
        pods = body.get("pods") if isinstance(body, dict) else body  # a bare list: the v1 shape
        if not isinstance(pods, list):
            raise self.client.unreadable("GET", "/v2/pods", f"{shape(body)}, no `pods` list")
        pods = [p for p in pods if isinstance(p, dict)]
        types: dict[str, str | None] = {}
        note = None
        if any(_STATES.get(str(p.get("status", "")).upper()) == InstanceState.STOPPED for p in pods):
            try:
                data = await self.graphql(f"query {{ myself {{ pods {{ {_GQL_FIELDS} }} }} }}")
                for item in ((data.get("myself") or {}).get("pods") or ()):
                    if isinstance(item, dict) and item.get("id"):
                        types[str(item["id"])] = item.get("podType")
            except ProviderError as exc:
                note = f"cannot tell whether stopped pods were interrupted: {exc}"
        return [instance_from_v2(p, types.get(str(p.get("id"))), None if str(p.get("id")) in types else note)
                for p in pods]

    async def get(self, instance_id: str) -> InstanceInfo:
        path = f"/v2/pods/{segment(instance_id)}"
        pod = await self.client.json("GET", path, expect=dict)
        if pod.get("id") is None or not (pod.get("status") or pod.get("desiredStatus")):
            raise self.client.unreadable("GET", path, f"{shape(pod)}, not a pod (no id and status)")
        pod_type = note = None
        if _STATES.get(str(pod.get("status", "")).upper()) == InstanceState.STOPPED:
            try:
                pod_type = await self.pod_type(instance_id)
            except ProviderError as exc:
                note = f"cannot tell whether it was interrupted: {exc}"
        return instance_from_v2(pod, pod_type, note)

    async def stop(self, instance_id: str) -> None:
        await self.client.request("POST", f"/v2/pods/{segment(instance_id)}/action", json={"action": "stop"})

    async def terminate(self, instance_id: str) -> None:
        # 204 with no body; 404 for an unknown pod; 409 for an Instant Cluster's pod.
        await self.client.request("DELETE", f"/v2/pods/{segment(instance_id)}")

    # -- GraphQL -----------------------------------------------------------------

    async def graphql(self, query: str) -> dict[str, Any]:
        """POST /graphql; `data`, or `ProviderError` for an `errors` array (sent with HTTP 200)."""
        response = await self.client.request("POST", "/graphql", json={"query": query})
        try:
            body = response.json()
        except ValueError:
            raise self.client.unreadable("POST", "/graphql", "something that is not JSON") from None
        if not isinstance(body, dict):
            raise self.client.unreadable("POST", "/graphql", shape(body))
        if body.get("errors"):
            raise self.client.error(response, not_found=False)
        data = body.get("data")
        if not isinstance(data, dict):
            raise self.client.unreadable("POST", "/graphql", f"{shape(body)}, no `data` object")
        return data

    async def pod_type(self, instance_id: str) -> str | None:
        """GraphQL `podType` of one pod (`INTERRUPTABLE` for spot), None if unknown."""
        if not _POD_ID.fullmatch(instance_id):
            return None  # never splice odd characters into a query
        data = await self.graphql(
            f"query {{ pod(input: {{podId: {json.dumps(instance_id)}}}) {{ {_GQL_FIELDS} }} }}")
        pod = data.get("pod")
        return pod.get("podType") if isinstance(pod, dict) else None
