"""TensorDock API v2 (`/api/v2/instances`), parsed defensively.

PROVIDERS.md rates this API "shaky": the docs show a JSON:API body
(`data.attributes.instances[].attributes`), a third-party Terraform provider that was
tested against the live API decodes flat instances or ones wrapped in `data`, and a
derived schema shows `portForwards` as a map and `gpus` as a list. Every one of those
shapes is accepted here, and nothing else: a body in none of them (a proxy's `null`,
`{}`, HTML) is an `UnreadableAnswer`, never an empty account. Also: an
`{"error": ...}` inside a 2xx body is a failure.
The SSH user depends on the image and is unknown ([unverified]), so it is left None
unless the body has a `user`.
"""

from __future__ import annotations

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

DEFAULT_URL = "https://dashboard.tensordock.com"

_STATES = {
    "queued": InstanceState.STARTING,
    "starting": InstanceState.STARTING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "stoppeddisassociated": InstanceState.STOPPED,  # stopped, and the GPU released
    "deleting": InstanceState.TERMINATING,          # [unverified]
    "deleted": InstanceState.TERMINATED,            # [unverified]
    "error": InstanceState.ERROR,                   # [unverified]
}


def _unwrap(item: Any) -> dict[str, Any]:
    """The instance's fields whether flat, under `data`, or under `attributes`."""
    if isinstance(item, dict) and isinstance(item.get("data"), dict):
        item = item["data"]
    if isinstance(item, dict) and isinstance(item.get("attributes"), dict):
        merged = dict(item["attributes"])
        merged.setdefault("id", item.get("id"))
        return merged
    return dict(item) if isinstance(item, dict) else {}


def _instances(body: Any) -> list[dict[str, Any]] | None:
    """The list of instances in any of the documented list shapes; None in none of them."""
    for candidate in (body, _unwrap(body)):
        if isinstance(candidate, list):
            return [_unwrap(i) for i in candidate]
        if isinstance(candidate, dict):
            inner = candidate.get("instances")
            if isinstance(inner, list):
                return [_unwrap(i) for i in inner]
    return None


def _ssh_port(inst: dict[str, Any]) -> int | None:
    forwards = inst.get("portForwards")
    if isinstance(forwards, list):
        for f in forwards:
            if isinstance(f, dict) and as_int(f.get("internal_port", f.get("internalPort"))) == 22:
                return as_int(f.get("external_port", f.get("externalPort")))
    if isinstance(forwards, dict):  # {"22": 22022} or {"22022": 22}: take the side that is not 22
        for internal, external in forwards.items():
            if as_int(internal) == 22:
                return as_int(external)
            if as_int(external) == 22:
                return as_int(internal)
    return 22 if inst.get("useDedicatedIp") else None


def _gpus(inst: dict[str, Any]) -> tuple[str | None, int | None]:
    resources = as_dict(inst.get("resources"))
    gpus = resources.get("gpus")
    if isinstance(gpus, dict) and gpus:
        name, info = next(iter(gpus.items()))
        count = sum(as_int(g.get("count")) or 0 for g in gpus.values() if isinstance(g, dict))
        return (as_text(info.get("v0Name")) if isinstance(info, dict) else None) or name, count or None
    if isinstance(gpus, list) and gpus:
        first = gpus[0] if isinstance(gpus[0], dict) else {}
        count = sum(as_int(g.get("count")) or 1 for g in gpus if isinstance(g, dict))
        return as_text(first.get("v0Name") or first.get("name")), count
    return None, None


def instance_from_api(inst: dict[str, Any]) -> InstanceInfo:
    raw = as_text(inst.get("status"))
    state = _STATES.get((raw or "").lower(), InstanceState.UNKNOWN)
    gpu_name, gpu_count = _gpus(inst)
    ip = as_text(inst.get("ipAddress") or inst.get("ip"))
    return InstanceInfo(
        id=str(inst.get("id")),
        state=state,
        raw_status=raw,
        name=as_text(inst.get("name")),
        price_per_hour=as_float(inst.get("rateHourly")),
        started_at=parse_time(inst.get("startedAt")) if state == InstanceState.RUNNING else None,
        ssh_host=ip,
        ssh_port=_ssh_port(inst) if ip else None,
        ssh_user=as_text(inst.get("user")),
        gpu_name=gpu_name,
        gpu_count=gpu_count,
    )


class TensorDock(HttpProvider):
    """TensorDock instances (API v2)."""

    type = "tensordock"
    default_url = DEFAULT_URL
    capabilities = Capabilities(
        can_stop=True,
        stop_keeps="the instance's disk",
        stop_loses="the disk keeps billing, and the GPU may be released while stopped (stoppeddisassociated)",
        teardown_destroys="the instance and its disk",
    )

    def _check(self, body: Any, status: int = 200) -> Any:
        """TensorDock can put `{"error": ...}` in a 2xx body; that is a failure."""
        if isinstance(body, dict) and body.get("error") and not body.get("data"):
            raise ProviderError(self.type, status, None, self.client.redact(str(body["error"])))
        return body

    async def list(self) -> list[InstanceInfo]:
        path = "/api/v2/instances"
        body = self._check(await self.client.json("GET", path, expect=(dict, list)))
        found = _instances(body)
        if found is None:
            raise self.client.unreadable("GET", path, f"{shape(body)}, no instance list")
        return [instance_from_api(i) for i in found if i]

    async def get(self, instance_id: str) -> InstanceInfo:
        path = f"/api/v2/instances/{segment(instance_id)}"
        body = self._check(await self.client.json("GET", path, expect=dict))
        inst = _unwrap(body)
        if not inst.get("status"):
            raise self.client.unreadable("GET", path, f"{shape(body)}, not an instance (no status)")
        inst.setdefault("id", instance_id)
        return instance_from_api(inst)

    # Mutations: the answer's shape is not documented, so an empty body or any object
    # is taken as accepted (the sessions layer then polls for the new state); a bare
    # `null`, list or text is not.
    async def stop(self, instance_id: str) -> None:
        self._check(await self.client.json("POST", f"/api/v2/instances/{segment(instance_id)}/stop",
                                           expect=(dict, type(None))))

    async def terminate(self, instance_id: str) -> None:
        self._check(await self.client.json("DELETE", f"/api/v2/instances/{segment(instance_id)}",
                                           expect=(dict, type(None))))
