"""Lambda Cloud: `/api/v1/instances` and `/api/v1/instance-operations/terminate`.

Lambda has no stop ("It currently isn't possible to pause (suspend) your instance
rather than terminating it"), so `stop` refuses and says why, never falling back to
terminate. Prices are integer US cents per hour for the whole instance. Success
bodies are `{"data": ...}`; errors `{"error": {"code", "message", "suggestion"}}`,
and the docs say to rely on `code`, so "not found" is recognised by it. The API has
no start time, so spend comes from the agent's uptime.
"""

from __future__ import annotations

from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    ProviderError,
    as_dict,
    as_float,
    as_int,
    as_text,
    shape,
)
from backends.providers.http import HttpProvider, segment

DEFAULT_URL = "https://cloud.lambda.ai"
NOT_FOUND_CODE = "global/object-does-not-exist"

_STATES = {
    "booting": InstanceState.STARTING,
    "active": InstanceState.RUNNING,
    "unhealthy": InstanceState.ERROR,
    "terminating": InstanceState.TERMINATING,
    "terminated": InstanceState.TERMINATED,
    # [unverified] Lambda sells no documented spot capacity; `preempted` is read as
    # "gone, and not by you".
    "preempted": InstanceState.TERMINATED,
}


def instance_from_api(inst: dict[str, Any]) -> InstanceInfo:
    """An `InstanceInfo` from a Lambda `Instance` object."""
    raw = as_text(inst.get("status"))
    itype = as_dict(inst.get("instance_type"))
    specs = as_dict(itype.get("specs"))
    cents = as_float(itype.get("price_cents_per_hour"))
    ip = as_text(inst.get("ip"))
    return InstanceInfo(
        id=str(inst.get("id")),
        state=_STATES.get((raw or "").lower(), InstanceState.UNKNOWN),
        raw_status=raw,
        name=as_text(inst.get("name")),
        preempted=(raw or "").lower() == "preempted",
        price_per_hour=None if cents is None else cents / 100.0,
        ssh_host=ip,
        ssh_port=22 if ip else None,
        ssh_user="ubuntu",
        gpu_name=as_text(itype.get("gpu_description")),
        gpu_count=as_int(specs.get("gpus")),
    )


class Lambda(HttpProvider):
    """Lambda Cloud instances."""

    type = "lambda"
    default_url = DEFAULT_URL
    client_options = {"backoff": 1.0}  # "generally limited to one request per second"
    capabilities = Capabilities(
        can_stop=False,
        stop_keeps="",
        stop_loses="",
        teardown_destroys="the instance and everything on its disk; only persistent filesystems survive",
        stop_refusal=("Lambda has no stop: an instance runs, and bills, until it is terminated. "
                      "Download what you need, then use teardown"),
    )

    def _not_found(self, exc: ProviderError) -> ProviderError:
        if exc.code == NOT_FOUND_CODE and not isinstance(exc, InstanceNotFound):
            return InstanceNotFound(exc.provider, exc.status, exc.code, exc.message)
        return exc

    async def list(self) -> list[InstanceInfo]:
        body = await self.client.json("GET", "/api/v1/instances", expect=dict)
        data = body.get("data")
        if not isinstance(data, list):
            raise self.client.unreadable("GET", "/api/v1/instances", f"{shape(body)}, no `data` list")
        return [instance_from_api(i) for i in data if isinstance(i, dict)]

    async def get(self, instance_id: str) -> InstanceInfo:
        path = f"/api/v1/instances/{segment(instance_id)}"
        try:
            body = await self.client.json("GET", path, expect=dict)
        except ProviderError as exc:
            raise self._not_found(exc) from None
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("status"):
            raise self.client.unreadable("GET", path, f"{shape(body)}, no `data` instance")
        return instance_from_api(data)

    async def terminate(self, instance_id: str) -> None:
        path = "/api/v1/instance-operations/terminate"
        try:
            body = await self.client.json("POST", path, json={"instance_ids": [instance_id]}, expect=dict)
        except ProviderError as exc:
            raise self._not_found(exc) from None
        if not isinstance(body.get("data"), dict):  # {"data": {"terminated_instances": [...]}}
            raise self.client.unreadable("POST", path, f"{shape(body)}, no `data` object")
