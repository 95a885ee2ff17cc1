"""AWS, GCP, Azure, SkyPilot and dstack through their official command-line tools.

Their APIs need SigV4, OAuth or Entra ID tokens; their CLIs already hold the user's
credentials the way the user set them up (profiles, `gcloud auth login`, `az login`,
`sky check`, `dstack config`). So gpuctl runs `aws ec2 ...`, `gcloud compute ...`,
`az vm ...`, `sky ...`, `dstack ...`, always as an argv list (never a shell string),
with JSON output where the tool has it. A missing tool is a `ProviderUnavailable`
naming how to install it.

Output that exits 0 but is not what the tool prints (`null`, an empty document, a
list where an object belongs) is an `UnreadableAnswer`, never "no such instance":
a missing instance is the tool's own not-found error.

Mutating calls are given a long timeout: `gcloud ... stop`, `az vm deallocate` and
`sky down` wait for the cloud by default, and waiting there is fine because the
sessions layer polls the final state afterwards anyway.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    UnreadableAnswer,
    as_float,
    as_text,
    parse_time,
    shape,
    unreadable,
)

MUTATION_TIMEOUT = 600.0


@dataclass(frozen=True)
class CliResult:
    """How a CLI call ended."""

    returncode: int
    stdout: str
    stderr: str


Run = Callable[[Sequence[str], float], Awaitable[CliResult]]


async def run_cli(argv: Sequence[str], timeout: float) -> CliResult:
    """Run `argv` (no shell), stdin closed, with a timeout; kills it on timeout."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        await proc.wait()
        raise ProviderUnavailable(argv[0], None, None, f"{' '.join(argv[:3])} did not finish within {timeout:g}s") from None
    return CliResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


class CliProvider(Provider):
    """A provider whose every call is one run of its CLI.

    Subclasses set `program`, `install_hint`, `not_found` (a regex on the CLI's
    output meaning "no such instance") and `code_pattern` (where the CLI prints the
    cloud's own error code).
    """

    program = ""
    install_hint = ""
    not_found: re.Pattern[str] = re.compile(r"(?!)")
    code_pattern: re.Pattern[str] | None = None

    def __init__(self, settings: ProviderSettings, *, run: Run | None = None,
                 which: Callable[[str], str | None] = shutil.which, **_: Any) -> None:
        self.settings = settings
        self.options = settings.options
        self._run = run or run_cli
        self._which = which

    def opt(self, name: str) -> str | None:
        return as_text(self.options.get(name))

    def global_args(self) -> list[str]:
        """Arguments added to every call (region, project, ...)."""
        return []

    def ident(self, instance_id: str) -> str:
        """The id as one argv word; one starting with '-' would be read as an option."""
        if not instance_id or instance_id.startswith("-"):
            raise ProviderError(self.type, None, None, f"{instance_id!r} is not a valid instance id")
        return instance_id

    async def call(self, *args: str, timeout: float | None = None) -> str:
        """Run the CLI with `args` + `global_args()`; stdout, or a `ProviderError`."""
        exe = self._which(self.program)
        if exe is None:
            raise ProviderUnavailable(self.type, None, None,
                                      f"the {self.program} CLI is not installed or not on PATH; {self.install_hint}")
        argv = [exe, *args, *self.global_args()]
        result = await self._run(argv, timeout or self.settings.timeout)
        if result.returncode != 0:
            raise self.error(result)
        return result.stdout

    async def call_json(self, *args: str, timeout: float | None = None,
                        expect: type | tuple[type, ...] | None = None) -> Any:
        """`call`, then stdout as JSON; `expect`: the type(s) it must have."""
        out = await self.call(*args, timeout=timeout)
        try:
            body = json.loads(out) if out.strip() else None
        except ValueError:
            raise self.unreadable(args, "something that is not JSON") from None
        if expect is not None and not isinstance(body, expect):
            raise self.unreadable(args, "nothing" if not out.strip() else shape(body))
        return body

    def unreadable(self, args: Sequence[str], got: str) -> UnreadableAnswer:
        return unreadable(self.type, " ".join([self.program, *args[:3]]), got, None)

    def error(self, result: CliResult) -> ProviderError:
        text = (result.stderr.strip() or result.stdout.strip())
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        message = " ".join(lines[-3:]) if lines else f"{self.program} exited with status {result.returncode}"
        match = self.code_pattern.search(text) if self.code_pattern else None
        code = match.group(1) if match else None
        cls = InstanceNotFound if self.not_found.search(text) else ProviderError
        return cls(self.type, None, code, message[:500])


# --- AWS ------------------------------------------------------------------------------

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

_SKY_STATES = {"INIT": InstanceState.STARTING, "UP": InstanceState.RUNNING, "STOPPED": InstanceState.STOPPED}
_SKY_HEADER = re.compile(r"^\s*NAME\b.*\bSTATUS\b", re.MULTILINE)
_SKY_NONE = re.compile(r"no existing clusters", re.IGNORECASE)


def parse_sky_status(text: str) -> dict[str, str]:
    """{cluster name: status} from `sky status`'s clusters table (it has no JSON)."""
    found: dict[str, str] = {}
    in_table = False
    for line in text.splitlines():
        words = line.split()
        if not words:
            if in_table and found:
                break  # the clusters table ended; managed jobs and services follow
            continue
        if words[0] == "NAME" and "STATUS" in words:
            in_table = True
            continue
        if in_table:
            status = next((w for w in words[1:] if w in _SKY_STATES), None)
            if status:
                found[words[0]] = status
    return found


class SkyPilot(CliProvider):
    """SkyPilot clusters through `sky`. The id is the cluster name."""

    type = "skypilot"
    program = "sky"
    install_hint = "install SkyPilot (pip install 'skypilot[aws]' or your cloud) and run `sky check`"
    not_found = re.compile(r"not found|does not exist", re.IGNORECASE)
    capabilities = Capabilities(
        can_stop=True,
        stop_keeps="the cluster's disks (where the cloud supports stopping)",
        stop_loses="some clouds cannot stop (RunPod, Lambda): sky refuses there; disks keep billing",
        teardown_destroys="every resource of the cluster, and all data on its disks (sky down)",
    )

    async def _table(self, *names: str) -> dict[str, str]:
        return parse_sky_status(await self.call("status", *names))

    def _info(self, name: str, status: str) -> InstanceInfo:
        return InstanceInfo(id=name, name=name, state=_SKY_STATES[status], raw_status=status)

    async def list(self) -> list[InstanceInfo]:
        return [self._info(n, s) for n, s in (await self._table()).items()]

    async def get(self, instance_id: str) -> InstanceInfo:
        out = await self.call("status", self.ident(instance_id))
        table = parse_sky_status(out)
        if instance_id not in table:
            # Only a clusters table without it, or sky saying so, means "no such
            # cluster"; empty or other output is not read as the cluster being gone.
            if not (_SKY_HEADER.search(out) or _SKY_NONE.search(out) or self.not_found.search(out)):
                raise self.unreadable(("status", instance_id), "no clusters table")
            raise InstanceNotFound(self.type, None, None, f"no cluster {instance_id} in `sky status`")
        return self._info(instance_id, table[instance_id])

    async def stop(self, instance_id: str) -> None:
        await self.call("stop", "-y", self.ident(instance_id), timeout=MUTATION_TIMEOUT)

    async def terminate(self, instance_id: str) -> None:
        out = await self.call("down", "-y", self.ident(instance_id), timeout=MUTATION_TIMEOUT)
        if self.not_found.search(out):  # sky reports an unknown cluster on stdout, status 0
            raise InstanceNotFound(self.type, None, None, out.strip().splitlines()[-1])


# --- dstack ---------------------------------------------------------------------------

_DSTACK_STATES = {
    "pending": InstanceState.STARTING, "submitted": InstanceState.STARTING,
    "provisioning": InstanceState.STARTING, "running": InstanceState.RUNNING,
    "terminating": InstanceState.TERMINATING, "terminated": InstanceState.TERMINATED,
    "failed": InstanceState.TERMINATED, "done": InstanceState.TERMINATED,
}
_DSTACK_INTERRUPTED = ("interrupted_by_no_capacity",)


def _dstack_name(run: dict[str, Any]) -> str | None:
    return as_text(run.get("run_name")) or as_text((run.get("run_spec") or {}).get("run_name"))


def dstack_run(run: dict[str, Any]) -> InstanceInfo:
    raw = as_text(run.get("status"))
    reasons = {as_text(run.get("termination_reason"))}
    price = None
    for job in run.get("jobs") or ():
        for sub in job.get("job_submissions") or ():
            reasons.add(as_text(sub.get("termination_reason")))
            jpd = sub.get("job_provisioning_data") or {}
            price = as_float(jpd.get("price")) or price
    return InstanceInfo(
        id=str(_dstack_name(run)),
        name=_dstack_name(run),
        state=_DSTACK_STATES.get((raw or "").lower(), InstanceState.UNKNOWN),
        raw_status=raw,
        preempted=any(r in _DSTACK_INTERRUPTED for r in reasons),
        price_per_hour=price,
        started_at=parse_time(run.get("submitted_at")),
    )


class Dstack(CliProvider):
    """dstack runs through `dstack`. The id is the run name. Option: project."""

    type = "dstack"
    program = "dstack"
    install_hint = "install dstack (pip install dstack) and run `dstack config` against your server"
    not_found = re.compile(r"not found", re.IGNORECASE)
    capabilities = Capabilities(
        can_stop=False,
        stop_keeps="",
        stop_loses="",
        teardown_destroys=("the run (dstack stop); an instance of a fleet may stay up, and bill, "
                           "until `dstack fleet delete NAME`"),
        stop_refusal="a dstack run cannot be paused: stopping it ends it. Use teardown (dstack stop)",
    )

    def global_args(self) -> list[str]:
        return ["--project", self.opt("project")] if self.opt("project") else []  # type: ignore[list-item]

    async def list(self) -> list[InstanceInfo]:
        body = await self.call_json("ps", "--json", expect=(dict, list))
        runs = body.get("runs") if isinstance(body, dict) else body
        if not isinstance(runs, list):
            raise self.unreadable(("ps", "--json"), f"{shape(body)}, no `runs` list")
        return [dstack_run(r) for r in runs if isinstance(r, dict)]

    async def get(self, instance_id: str) -> InstanceInfo:
        for info in await self.list():
            if info.id == instance_id:
                return info
        raise InstanceNotFound(self.type, None, None, f"no active run {instance_id} in `dstack ps`")

    async def terminate(self, instance_id: str) -> None:
        await self.call("stop", "-y", self.ident(instance_id), timeout=MUTATION_TIMEOUT)
