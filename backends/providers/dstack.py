"""dstack runs through `dstack` (see `backends.providers.cli`)."""

from __future__ import annotations

import re
from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    as_float,
    as_text,
    parse_time,
    shape,
)
from backends.providers.cli import MUTATION_TIMEOUT, CliProvider


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
