"""SkyPilot clusters through `sky` (see `backends.providers.cli`)."""

from __future__ import annotations

import re

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
)
from backends.providers.cli import MUTATION_TIMEOUT, CliProvider


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
