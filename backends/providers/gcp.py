"""Google Compute Engine through `gcloud compute` (see `backends.providers.cli`)."""

from __future__ import annotations

import re
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceState,
    as_text,
    parse_time,
)
from backends.providers.cli import MUTATION_TIMEOUT, CliProvider


_GCP_STATES = {
    "PROVISIONING": InstanceState.STARTING, "STAGING": InstanceState.STARTING, "PENDING": InstanceState.STARTING,
    "RUNNING": InstanceState.RUNNING, "REPAIRING": InstanceState.ERROR,
    "STOPPING": InstanceState.STOPPING, "SUSPENDING": InstanceState.STOPPING,
    "PENDING_STOP": InstanceState.STOPPING, "DEPROVISIONING": InstanceState.STOPPING,
    "SUSPENDED": InstanceState.STOPPED, "TERMINATED": InstanceState.STOPPED,  # GCP's TERMINATED is stopped
}


def gcp_instance(inst: dict[str, Any], preempted: bool = False) -> InstanceInfo:
    raw = as_text(inst.get("status"))
    state = _GCP_STATES.get(raw or "", InstanceState.UNKNOWN)
    sched = inst.get("scheduling") or {}
    spot = sched.get("provisioningModel") == "SPOT" or bool(sched.get("preemptible"))
    ip = None
    for nic in inst.get("networkInterfaces") or ():
        for access in nic.get("accessConfigs") or ():
            ip = ip or as_text(access.get("natIP"))
    return InstanceInfo(
        id=str(inst.get("name")),  # gcloud and the API address instances by name
        state=state,
        raw_status=raw,
        name=as_text(inst.get("name")),
        preempted=preempted,
        interruptible=spot,
        started_at=parse_time(inst.get("lastStartTimestamp")) if state == InstanceState.RUNNING else None,
        ssh_host=ip,
        ssh_port=22 if ip else None,
        gpu_name=(as_text(inst.get("machineType")) or "").rsplit("/", 1)[-1] or None,
    )


class Gcp(CliProvider):
    """Compute Engine through `gcloud compute`. Options: zone, project. The id is the instance name."""

    type = "gcp"
    program = "gcloud"
    install_hint = "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) and run `gcloud auth login`"
    not_found = re.compile(r"was not found|\bnotFound\b")
    capabilities = Capabilities(
        can_stop=True,
        stop_loses_data=True,  # see stop_loses: a disk checkpoints may be on is wiped
        stop_keeps="the persistent disks",
        stop_loses="local SSDs are discarded; persistent disks keep billing",
        teardown_destroys="the VM and every disk marked auto-delete (usually the boot disk)",
    )

    def global_args(self) -> list[str]:
        args = ["--format=json"]
        if self.opt("project"):
            args += ["--project", self.opt("project")]  # type: ignore[list-item]
        return args

    def _zone(self) -> list[str]:
        return ["--zone", self.opt("zone")] if self.opt("zone") else []  # type: ignore[list-item]

    async def list(self) -> list[InstanceInfo]:
        zones = ["--zones", self.opt("zone")] if self.opt("zone") else []
        body = await self.call_json("compute", "instances", "list", *zones, expect=list)  # type: ignore[arg-type]
        return [gcp_instance(i) for i in body if isinstance(i, dict)]

    async def get(self, instance_id: str) -> InstanceInfo:
        # A missing VM is gcloud's own "was not found" error (see `not_found`).
        inst = await self.call_json("compute", "instances", "describe", self.ident(instance_id), *self._zone(),
                                    expect=dict)
        info = gcp_instance(inst)
        if info.interruptible and info.state == InstanceState.STOPPED:
            # A preempted spot VM with action STOP only shows TERMINATED; the zone's
            # operations say whether Compute Engine did it (PROVIDERS.md 7).
            ops = await self.call_json(
                "compute", "operations", "list",
                f"--filter=operationType=compute.instances.preempted AND targetLink~/instances/{instance_id}$",
            )
            if ops:
                info = gcp_instance(inst, preempted=True)
        return info

    async def stop(self, instance_id: str) -> None:
        await self.call("compute", "instances", "stop", self.ident(instance_id), *self._zone(), "--quiet", timeout=MUTATION_TIMEOUT)

    async def terminate(self, instance_id: str) -> None:
        await self.call("compute", "instances", "delete", self.ident(instance_id), *self._zone(), "--quiet", timeout=MUTATION_TIMEOUT)


# --- Azure ----------------------------------------------------------------------------
