"""Providers reached through their official command-line tools: how the tools are run.

AWS, GCP, Azure, SkyPilot and dstack each have a module of their own (`aws.py`,
`gcp.py`, `azure.py`, `skypilot.py`, `dstack.py`); this one holds what they share.

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
    InstanceNotFound,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    UnreadableAnswer,
    as_text,
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
