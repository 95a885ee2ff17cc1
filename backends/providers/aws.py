"""AWS EC2 through `aws ec2` (see `backends.providers.cli` for how CLIs are run)."""

from __future__ import annotations

import re
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    as_text,
    parse_time,
    shape,
)
from backends.providers.cli import MUTATION_TIMEOUT, CliProvider


_AWS_STATES = {
    "pending": InstanceState.STARTING, "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING, "stopped": InstanceState.STOPPED,
    "shutting-down": InstanceState.TERMINATING, "terminated": InstanceState.TERMINATED,
}
_AWS_SPOT_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")


def aws_instance(inst: dict[str, Any]) -> InstanceInfo:
    raw = as_text((inst.get("State") or {}).get("Name"))
    state = _AWS_STATES.get(raw or "", InstanceState.UNKNOWN)
    reason = as_text((inst.get("StateReason") or {}).get("Code")) or ""
    spot = inst.get("InstanceLifecycle") == "spot"
    name = next((as_text(t.get("Value")) for t in inst.get("Tags") or () if t.get("Key") == "Name"), None)
    ip = as_text(inst.get("PublicIpAddress"))
    return InstanceInfo(
        id=str(inst.get("InstanceId")),
        state=state,
        raw_status=raw,
        name=name,
        preempted=spot and reason in _AWS_SPOT_REASONS,
        interruptible=spot,
        started_at=parse_time(inst.get("LaunchTime")) if state == InstanceState.RUNNING else None,
        ssh_host=ip,
        ssh_port=22 if ip else None,
        gpu_name=as_text(inst.get("InstanceType")),
    )


class Aws(CliProvider):
    """EC2 through `aws ec2`. Options: region, profile; `api_url` becomes --endpoint-url."""

    type = "aws"
    program = "aws"
    install_hint = "install the AWS CLI v2 (https://aws.amazon.com/cli/) and run `aws configure`"
    not_found = re.compile(r"InvalidInstanceID\.NotFound")
    code_pattern = re.compile(r"An error occurred \(([^)]+)\)")
    capabilities = Capabilities(
        can_stop=True,
        stop_loses_data=True,  # see stop_loses: a disk checkpoints may be on is wiped
        stop_keeps="the EBS volumes",
        stop_loses="instance-store disks are wiped; EBS volumes keep billing",
        teardown_destroys="the instance and every EBS volume marked DeleteOnTermination (usually the root disk)",
    )

    def global_args(self) -> list[str]:
        args = ["--output", "json"]
        for opt, flag in (("region", "--region"), ("profile", "--profile")):
            if self.opt(opt):
                args += [flag, self.opt(opt)]  # type: ignore[list-item]
        if self.settings.api_url:
            args += ["--endpoint-url", self.settings.api_url]
        return args

    async def _instances(self, *args: str) -> list[dict[str, Any]]:
        args = ("ec2", "describe-instances", *args)
        body = await self.call_json(*args, expect=dict)
        reservations = body.get("Reservations")
        if not isinstance(reservations, list) or not all(isinstance(r, dict) for r in reservations):
            raise self.unreadable(args, f"{shape(body)}, no `Reservations` list")
        return [i for r in reservations for i in r.get("Instances") or () if isinstance(i, dict)]

    async def list(self) -> list[InstanceInfo]:
        found = await self._instances("--filters", "Name=instance-state-name,Values=pending,running,stopping,stopped")
        return [aws_instance(i) for i in found]

    async def get(self, instance_id: str) -> InstanceInfo:
        found = await self._instances("--instance-ids", self.ident(instance_id))
        if not found:  # an empty but well-formed answer: the id is not there
            raise InstanceNotFound(self.type, None, None, f"no instance {instance_id}")
        return aws_instance(found[0])

    async def stop(self, instance_id: str) -> None:
        await self.call("ec2", "stop-instances", "--instance-ids", self.ident(instance_id), timeout=MUTATION_TIMEOUT)

    async def terminate(self, instance_id: str) -> None:
        await self.call("ec2", "terminate-instances", "--instance-ids", self.ident(instance_id), timeout=MUTATION_TIMEOUT)


# --- GCP ------------------------------------------------------------------------------
