"""Azure VMs through `az vm` (see `backends.providers.cli`)."""

from __future__ import annotations

import re
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceState,
    ProviderError,
    as_text,
)
from backends.providers.cli import MUTATION_TIMEOUT, CliProvider


_AZ_POWER = {
    "vm starting": InstanceState.STARTING, "vm running": InstanceState.RUNNING,
    "vm stopping": InstanceState.STOPPING, "vm deallocating": InstanceState.STOPPING,
    "vm stopped": InstanceState.STOPPED, "vm deallocated": InstanceState.STOPPED,
}


def azure_instance(vm: dict[str, Any]) -> InstanceInfo:
    raw = as_text(vm.get("powerState"))
    state = _AZ_POWER.get((raw or "").lower(), InstanceState.UNKNOWN)
    note = None
    if (raw or "").lower() == "vm stopped":
        note = "powered off but still allocated: Azure keeps billing compute until it is deallocated"
    ips = as_text(vm.get("publicIps"))
    return InstanceInfo(
        id=str(vm.get("id") or vm.get("name")),
        state=state,
        raw_status=raw,
        name=as_text(vm.get("name")),
        interruptible=(as_text(vm.get("priority")) or "").lower() == "spot" or None,
        ssh_host=ips.split(",")[0].strip() if ips else None,
        ssh_port=22 if ips else None,
        ssh_user=as_text((vm.get("osProfile") or {}).get("adminUsername")),
        gpu_name=as_text((vm.get("hardwareProfile") or {}).get("vmSize")),
        note=note,
    )


class Azure(CliProvider):
    """Azure VMs through `az vm`. Options: resource_group (unless the id is a full
    resource id), subscription. Stop is `deallocate`: `az vm stop` keeps billing."""

    type = "azure"
    program = "az"
    install_hint = "install the Azure CLI (https://learn.microsoft.com/cli/azure/install-azure-cli) and run `az login`"
    not_found = re.compile(r"ResourceNotFound|ResourceGroupNotFound|was not found")
    code_pattern = re.compile(r"\(([A-Za-z]+)\)")
    capabilities = Capabilities(
        can_stop=True,
        stop_loses_data=True,  # see stop_loses: a disk checkpoints may be on is wiped
        stop_keeps="the managed disks and the VM's configuration (stop deallocates, so compute stops billing)",
        stop_loses="the temporary disk and a dynamic public IP are released; managed disks keep billing",
        teardown_destroys=("the VM; its NIC, disks and public IP survive (and bill) unless they were "
                           "created with deleteOption Delete"),
    )

    def global_args(self) -> list[str]:
        args = ["--output", "json"]
        if self.opt("subscription"):
            args += ["--subscription", self.opt("subscription")]  # type: ignore[list-item]
        return args

    def _target(self, instance_id: str) -> list[str]:
        if instance_id.startswith("/subscriptions/"):
            return ["--ids", instance_id]
        group = self.opt("resource_group")
        if not group:
            raise ProviderError(self.type, None, None,
                                "set resource_group: in the pod's provider entry (or use the VM's full resource id as id)")
        return ["--resource-group", group, "--name", instance_id]

    async def list(self) -> list[InstanceInfo]:
        group = ["--resource-group", self.opt("resource_group")] if self.opt("resource_group") else []
        body = await self.call_json("vm", "list", "--show-details", *group, expect=list)  # type: ignore[arg-type]
        return [azure_instance(vm) for vm in body if isinstance(vm, dict)]

    async def get(self, instance_id: str) -> InstanceInfo:
        # A missing VM is az's own ResourceNotFound error (see `not_found`).
        vm = await self.call_json("vm", "show", "--show-details", *self._target(self.ident(instance_id)),
                                  expect=dict)
        info = azure_instance(vm)
        return info if instance_id.startswith("/subscriptions/") else _with_id(info, instance_id)

    async def stop(self, instance_id: str) -> None:
        await self.call("vm", "deallocate", *self._target(self.ident(instance_id)), timeout=MUTATION_TIMEOUT)

    async def terminate(self, instance_id: str) -> None:
        await self.call("vm", "delete", *self._target(self.ident(instance_id)), "--yes", timeout=MUTATION_TIMEOUT)


def _with_id(info: InstanceInfo, instance_id: str) -> InstanceInfo:
    from dataclasses import replace

    return replace(info, id=instance_id)


# --- SkyPilot -------------------------------------------------------------------------
