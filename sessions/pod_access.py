"""Open a short-lived way to run commands on one pod, for one-off actions.

`gpuctl launch`, `kill`, `logs -n` and friends connect, act and leave; they share
the monitor's resolution (pod entry, then ~/.ssh/config, then defaults) and
host-key policy, so an action reaches exactly the machine `status` shows.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from backends.pty_shell import PtyShell
from backends.runner import LocalRunner, Runner, SshRunner
from backends.ssh import connect
from sessions import pods
from sessions.config import Defaults, PodConfig
from sessions.proxied_ssh import is_proxied


@asynccontextmanager
async def open_runner(pod: PodConfig, defaults: Defaults) -> AsyncIterator[Runner]:
    """Yield a `Runner` for the pod; raises `backends.ssh.SshFailure` if unreachable."""
    if pods.is_local(pod):
        yield LocalRunner(defaults.command_timeout)
        return
    target = pods.ssh_target(pod, defaults)
    conn = await connect(target)
    try:
        if is_proxied(pod):
            # RunPod's proxy offers an interactive shell only: no exec channel.
            shell = await PtyShell.open(conn, timeout=target.command_timeout)
            try:
                yield shell
            finally:
                shell.close()
        else:
            yield SshRunner(conn, target.command_timeout)
    finally:
        conn.close()
        await conn.wait_closed()
