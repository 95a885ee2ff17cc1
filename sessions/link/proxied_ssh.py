"""Pods reached through RunPod's SSH proxy: an interactive shell only.

`<token>@ssh.runpod.io` gives no exec channel and no SFTP, so for such a pod the
monitor runs the agent inside a PTY shell (`backends.transport.pty_shell`) and
one-off commands go through a second shell (`backends.transport.PtyTransport`); the
pod's link (`sessions.link.pod_link`) picks that transport for every action too. Slower than direct TCP (every command is typed
and framed; downloads are base64), so the import and the UI say that exposing
22/tcp on the pod is the faster way.

A pod counts as proxied when its provider entry says `ssh_proxy: true` (what
`gpuctl pods import runpod` writes) or its host is RunPod's proxy.
"""

from __future__ import annotations

from typing import Any

import asyncssh

from backends.agent import AgentChannel
from backends.ssh import FailureKind, SshFailure
from backends.transport import PtyTransport
from backends.transport.pty_shell import PtyShell
from sessions.config.loader import PodConfig

RUNPOD_PROXY_HOST = "ssh.runpod.io"
SLOWER_NOTE = "proxied SSH (interactive shell only): slower than direct TCP; expose 22/tcp on the pod for direct"


def is_proxied(pod: PodConfig) -> bool:
    """True for a pod reached through RunPod's shell-only SSH proxy."""
    if pod.provider is not None and pod.provider.options.get("ssh_proxy") is True:
        return True
    return pod.host.lower() == RUNPOD_PROXY_HOST


async def start(conn: asyncssh.SSHClientConnection, options: dict[str, Any], *,
                timeout: float) -> tuple[PtyTransport | None, AgentChannel]:
    """(a shell for one-off commands, the agent) over a proxied connection.

    The command shell is a second channel; if the proxy refuses it, commands are
    unavailable (None) but telemetry still flows.

    Raises:
        SshFailure: the agent's shell could not start, or the pod has no python3 (the
            shell-probe fallback needs exec, which the proxy does not offer).
    """
    shell = await PtyShell.open(conn, timeout=timeout)
    try:
        agent = await shell.start_agent(options, timeout=timeout)
    except SshFailure as exc:
        shell.close()
        if "not found" in exc.message:
            raise SshFailure(FailureKind.COMMAND,
                             "python3 is not on the pod, and over RunPod's proxied SSH gpuctl has no other "
                             "way to read it; expose 22/tcp for direct TCP") from None
        raise
    try:
        commands: PtyTransport | None = await PtyTransport.open(conn, timeout=timeout)
    except SshFailure:
        commands = None
    return commands, agent
