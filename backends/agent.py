"""The local end of the remote agent: one long-lived SSH channel per pod.

An exec per poll costs the pod a shell start each time (and conda/pyenv init on many
images: 90-140 ms), so gpuctl starts the agent (`backends/pod_agent/`) once per connection and
reads the JSON lines it streams. Pods without python3 fall back to one exec per tick of
the shell probe in `backends/shell_probe.py`, which yields samples of the same shape
(run through the pod's transport by `sessions.fleet.monitor`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncssh

from backends.agent_command import build_agent_command
from backends.ssh import FailureKind, SshFailure

# A shell reports a missing program with status 127 ("command not found").
_NOT_FOUND_STATUS = 127


class AgentUnavailable(Exception):
    """The pod cannot run the agent (no python3); use the shell probe instead."""


class AgentChannel:
    """A running agent on a pod: read its messages, send it commands."""

    def __init__(self, process: asyncssh.SSHClientProcess, hello: dict[str, Any]):
        self._process = process
        self.hello = hello

    @classmethod
    async def start(
        cls,
        conn: asyncssh.SSHClientConnection,
        options: dict[str, Any],
        *,
        python: str = "python3",
        timeout: float = 15.0,
    ) -> "AgentChannel":
        """Start the agent and wait for its hello line.

        Raises:
            AgentUnavailable: python3 is missing on the pod.
            SshFailure: the agent could not start for another reason.
        """
        command = build_agent_command(options, python=python)
        try:
            process = await conn.create_process(command, encoding="utf-8", errors="replace")
        except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, OSError) as exc:
            raise SshFailure(FailureKind.LOST, f"could not open the agent channel: {exc}") from exc
        try:
            first = await asyncio.wait_for(process.stdout.readline(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            process.close()
            raise SshFailure(FailureKind.TIMEOUT, f"the agent did not answer within {timeout:g}s") from None
        if not first:
            raise await cls._explain_early_exit(process, python, timeout)
        try:
            hello = json.loads(first)
        except ValueError:
            process.close()
            # Something printed before the agent (a noisy login script, or not our agent):
            # show what it was rather than a JSON error.
            raise SshFailure(FailureKind.COMMAND, f"the agent's first line is not JSON: {first.strip()[:200]!r}") from None
        return cls(process, hello)

    @staticmethod
    async def _explain_early_exit(process: asyncssh.SSHClientProcess, python: str, timeout: float) -> Exception:
        try:
            await asyncio.wait_for(process.wait_closed(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            process.close()
        stderr = ""
        try:
            stderr = (await asyncio.wait_for(process.stderr.read(), 1.0)) or ""
        except (asyncio.TimeoutError, TimeoutError, asyncssh.Error):
            pass
        status = process.exit_status
        if status == _NOT_FOUND_STATUS or "not found" in stderr:
            return AgentUnavailable(f"{python} not found on the pod")
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {status}"]
        return SshFailure(FailureKind.COMMAND, f"the agent exited at start: {tail[0][:300]}")

    async def read(self) -> dict[str, Any] | None:
        """The next message from the agent, or None when the channel has closed."""
        while True:
            line = await self._process.stdout.readline()
            if not line:
                return None
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a torn or foreign line; the next tick brings a full sample
            if isinstance(message, dict):
                return message

    def send(self, command: dict[str, Any]) -> None:
        """Send one command line to the agent (e.g. `{"cmd": "interval", "seconds": 2}`)."""
        self._process.stdin.write(json.dumps(command, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Close the channel; the agent exits on stdin EOF."""
        try:
            self._process.stdin.write_eof()
        except (OSError, asyncssh.Error, BrokenPipeError):
            pass
        self._process.close()
