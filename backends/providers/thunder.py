"""Thunder Compute: `https://api.thundercompute.com:8443/v1` (note the port).

Sources are the official `tnr` CLI and Terraform provider (PROVIDERS.md section 10):
* The list is a JSON *object* keyed by instance id (`{"0": {...}}`), not an array;
  the key is the id used in URLs.
* There is no get: the list is filtered (by key, or by `uuid`).
* There is no stop in the current CLI or API; delete is `POST /instances/{id}/delete`.
* Errors are `{"code": <int>, "error": "<type>", "message": ...}`.
* `{}` is a real answer (no instances), so "not found" rests on it; anything else
  that is not a map of instances (a proxy's `null` or HTML, a list, a map whose
  values are not instances) is an `UnreadableAnswer`, never "already gone".
* Prices come from `GET /pricing`, whose key format is [unverified], so no price is
  read here: set `price_per_hour` in the pod's config.
"""

from __future__ import annotations

from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    as_int,
    as_text,
    parse_time,
    shape,
)
from backends.providers.http import HttpProvider, segment

DEFAULT_URL = "https://api.thundercompute.com:8443"

_STATES = {
    "PROVISIONING": InstanceState.STARTING,
    "QUEUED": InstanceState.STARTING,
    "PENDING": InstanceState.STARTING,
    "STARTING": InstanceState.STARTING,
    "RESTORING": InstanceState.STARTING,
    "RUNNING": InstanceState.RUNNING,
    "MODIFYING": InstanceState.RUNNING,
    "SNAPPING": InstanceState.RUNNING,
    "MIGRATING": InstanceState.RUNNING,
    "STOPPING": InstanceState.STOPPING,
    "STOPPED": InstanceState.STOPPED,
    "UNKNOWN": InstanceState.UNKNOWN,
}


def instance_from_api(key: str, inst: dict[str, Any]) -> InstanceInfo:
    raw = as_text(inst.get("status"))
    state = _STATES.get((raw or "").upper(), InstanceState.UNKNOWN)
    ip = as_text(inst.get("ip"))
    return InstanceInfo(
        id=str(key),
        state=state,
        raw_status=raw,
        name=as_text(inst.get("name")),
        # [unverified] createdAt is the creation time; with no stop, that is when billing began.
        started_at=parse_time(inst.get("createdAt")) if state == InstanceState.RUNNING else None,
        ssh_host=ip,
        ssh_port=(as_int(inst.get("port")) or 22) if ip else None,  # the CLI uses 22 when 0
        ssh_user="ubuntu",
        gpu_name=as_text(inst.get("gpuType")),
        gpu_count=as_int(inst.get("numGpus")),  # a string in the API
    )


class Thunder(HttpProvider):
    """Thunder Compute instances."""

    type = "thunder"
    default_url = DEFAULT_URL
    capabilities = Capabilities(
        can_stop=False,
        stop_keeps="",
        stop_loses="",
        teardown_destroys="the instance and everything on its disk",
        stop_refusal=("Thunder Compute has no stop in its API: an instance runs until deleted. "
                      "Download what you need, then use teardown"),
    )

    async def _entries(self) -> list[tuple[str, dict[str, Any]]]:
        path = "/v1/instances/list"
        body = await self.client.json("GET", path, expect=dict)
        if not all(isinstance(v, dict) for v in body.values()):
            raise self.client.unreadable("GET", path, f"{shape(body)}, not a map of instances")
        return [(str(k), v) for k, v in body.items()]

    async def list(self) -> list[InstanceInfo]:
        return [instance_from_api(k, v) for k, v in await self._entries()]

    async def get(self, instance_id: str) -> InstanceInfo:
        for key, inst in await self._entries():
            if str(instance_id) in (key, str(inst.get("uuid"))):
                return instance_from_api(key, inst)
        raise InstanceNotFound(self.type, None, None, f"no instance {instance_id} on this account")

    async def terminate(self, instance_id: str) -> None:
        await self.client.json("POST", f"/v1/instances/{segment(instance_id)}/delete")
