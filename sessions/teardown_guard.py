"""May this pod be torn down? Only when each session's newest checkpoint has a verified local copy.

For every session configured on the pod, the pod lists its checkpoints
(`sessions.checkpoints.list_checkpoints`, one listing, no settle wait) and
`sessions.download.newest_verified` says whether the newest complete one has a local
copy whose sha256 matched the pod's (`sessions.checkpoint_index`). The guard says yes
only when every session's answer is "verified" or "no checkpoints"; it says why not
otherwise, in words a person can act on.

It refuses when it cannot check (the pod is unreachable, the listing fails): a
teardown is irreversible, and "could not look" is not "nothing to lose". `--force`
(or typing the name past the warning in the TUI) is the way through.

A pod with no configured sessions has nothing gpuctl knows to protect; the guard lets
it through and says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from backends.runner import Runner
from backends.ssh import SshFailure
from sessions.config import Config, Defaults, PodConfig

@asynccontextmanager
async def _runner(config: Config, pod: PodConfig) -> AsyncIterator[Runner]:
    """A command runner on the pod; a shell-only (RunPod proxied) pod gets a PTY shell."""
    from sessions import pods, proxied_ssh

    if not proxied_ssh.is_proxied(pod):
        from sessions.pod_access import open_runner

        async with open_runner(pod, config.defaults) as runner:
            yield runner
        return
    from backends.pty_shell import PtyShell
    from backends.ssh import connect

    target = pods.ssh_target(pod, config.defaults)
    conn = await connect(target)
    try:
        yield await PtyShell.open(conn, timeout=target.command_timeout)
    finally:
        conn.close()


async def check(config: Config, pod: PodConfig) -> tuple[bool, str]:
    """(ok, description) for tearing down `pod`; see the module docstring."""
    from sessions import checkpoint_index, download
    from sessions.checkpoints import CheckpointListingFailed, UnsafeName, list_checkpoints

    if not pod.sessions:
        return True, "no sessions are configured on it, so gpuctl knows of no checkpoints to keep"
    verified, missing, empty = [], [], []
    try:
        async with _runner(config, pod) as runner:
            for session in pod.sessions:
                found = await list_checkpoints(runner, pod, session, settle=0.0)
                newest, ok = download.newest_verified(config, pod, session, found)
                if newest is None:
                    empty.append(session.name)
                elif ok:
                    entry = checkpoint_index.lookup(checkpoint_index.host_identity(pod, config.defaults), newest)
                    where = f" at {entry.local_path}" if entry else ""
                    verified.append(f"session {session.name}: {newest.name} verified{where}")
                else:
                    missing.append(f"session {session.name}'s newest checkpoint {newest.name} "
                                   "has no verified local copy")
    except SshFailure as exc:
        return False, f"cannot check its checkpoints: {exc.message}"
    except (CheckpointListingFailed, UnsafeName) as exc:
        return False, f"cannot check its checkpoints: {exc}"
    if missing:
        return False, "; ".join(missing)
    parts = verified + ([f"no checkpoints in session{'s' if len(empty) > 1 else ''} {', '.join(empty)}"]
                        if empty else [])
    return True, "; ".join(parts)


def guard_for(config: Config):
    """The guard for pods of `config` (what `provider_ops.teardown` and the TUI take)."""

    async def guard(pod: PodConfig) -> tuple[bool, str]:
        return await check(config, pod)

    return guard


async def guard(pod: PodConfig, config: Config | None = None) -> tuple[bool, str]:
    """`check` for one pod. Pass `config` (or use `guard_for`): without it, `defaults:`
    are unknown, so a verified copy recorded under the config's default user or port
    may not be found, and the guard refuses (the safe side)."""
    return await check(config or Config(path=Path("<no config>"), defaults=Defaults(), pods=(pod,)), pod)
