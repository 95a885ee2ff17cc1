"""`type: ssh`: a machine with no provider API, only SSH.

Nothing can be listed, queried or stopped. Teardown can power the machine off, and
only where the config says `shutdown_stops_billing: true` (a dedicated box billed
while powered on, a cloud VM whose shutdown ends billing); elsewhere powering off
would stop the training and keep the bill running, so gpuctl refuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from backends.providers.base import Capabilities, InstanceInfo, Provider, ProviderSettings, Unsupported

SHUTDOWN_COMMAND = 'if [ "$(id -u)" = 0 ]; then shutdown -h now; else sudo -n shutdown -h now; fi'
"""Root runs shutdown itself (containers often have no sudo); others need
password-less sudo (`-n`: fail at once instead of waiting for a password)."""

NO_API = "an ssh pod has no provider API"


class SshHost(Provider):
    """A plain SSH host. `run_command(cmd)` runs a shell command on it (from `sessions`)."""

    type = "ssh"

    def __init__(self, settings: ProviderSettings, *,
                 run_command: Callable[[str], Awaitable[Any]] | None = None, **_: Any) -> None:
        self.settings = settings
        self.shutdown_stops_billing = bool(settings.options.get("shutdown_stops_billing"))
        self._run_command = run_command
        destroys = ("nothing: the machine is powered off (sudo shutdown -h now); its disks stay, "
                    "and you power it on again from wherever you rent it")
        self.capabilities = Capabilities(
            can_stop=False,
            stop_keeps="",
            stop_loses="",
            teardown_destroys=destroys,
            stop_refusal=f"{NO_API}: gpuctl cannot stop it; power it off with teardown "
                         "(where the config says shutdown_stops_billing: true)",
            can_list=False,
            can_query=False,
        )

    async def get(self, instance_id: str) -> InstanceInfo:
        raise Unsupported(self.type, None, None, NO_API)

    async def list(self) -> list[InstanceInfo]:
        raise Unsupported(self.type, None, None, f"{NO_API}: there is nothing to import")

    async def terminate(self, instance_id: str) -> None:
        if not self.shutdown_stops_billing:
            raise Unsupported(self.type, None, None,
                              f"{NO_API}, and powering it off may not stop its billing; if it does, set "
                              "shutdown_stops_billing: true in the pod's provider entry")
        if self._run_command is None:
            raise Unsupported(self.type, None, None, "no way to run a command on the pod was given")
        await self._run_command(SHUTDOWN_COMMAND)
