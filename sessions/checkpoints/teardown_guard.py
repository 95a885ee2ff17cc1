"""May this pod be torn down? Only when nothing newer than a verified local copy is on it.

For every session configured on the pod, the pod lists its checkpoints
(`sessions.checkpoints.listing.list_checkpoints`, one listing, no settle wait). The newest
*verified* one is the newest complete checkpoint whose recorded local copy still holds
the pod's content (`sessions.checkpoints.verify.confirm`: SHA-256 on both sides, each
hashed again whenever its stat stamp moved, so neither a pod file rewritten behind the
same size and mtime nor a local copy overwritten with as many bytes passes). The guard
says yes only when, in every session, nothing is newer than that:

* no checkpoint ahead of it in the newest-first order (`sessions.checkpoints.listing`), and
* no checkpoint still being written (`writing`) ahead of it or modified after it: a
  save in progress is newer training state whatever its name (`best.pt` rewritten now
  counts; an abandoned `checkpoint-300/` without its marker behind a verified
  `checkpoint-400/` does not).

A session with checkpoints but none verified is refused the same way, and so is one
with none at all where the caller knows it has trained (`steps`). The refusal
names what is newer and, for a copy that failed to confirm, why.

It refuses when it cannot check (the pod is unreachable, the listing fails): a
teardown is irreversible, and "could not look" is not "nothing to lose". `--force`
(or typing the name past the warning in the TUI) is the way through.

All of one check (every session's listing and hashing) runs on one transport, borrowed
from the caller's Fleet (`borrow`: the monitor's live connection, or the one a headless
command opened) or, without one, from a link of its own.

A pod with no configured sessions has nothing gpuctl knows to protect; the guard lets
it through and says so. `check` and `guard_for` are also what `gpuctl stop` asks for
providers whose stop loses the disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from backends.runner import Runner
from backends.ssh import SshFailure
from sessions.errors import PodNotRunning
from sessions.checkpoints import index as checkpoint_index
from sessions.checkpoints import verify as checkpoint_verify
from sessions.checkpoints.listing import (
    Checkpoint,
    CheckpointListingFailed,
    UnsafeName,
    list_checkpoints,
)
from sessions.config.loader import Config, Defaults, PodConfig


Borrow = Callable[[str], AbstractAsyncContextManager[Runner]]
"""`borrow(pod_name)`: a transport on the pod's link (`Fleet.borrow`)."""


@asynccontextmanager
async def _runner(config: Config, pod: PodConfig, borrow: Borrow | None) -> AsyncIterator[Runner]:
    """A transport on the pod through its link (a PTY shell where RunPod's proxy
    offers no exec: the link picks, as for every other action)."""
    if borrow is not None:
        async with borrow(pod.name) as transport:
            yield transport
        return
    from sessions.link.pod_link import open_transport

    async with open_transport(pod, config.defaults) as transport:
        yield transport


NOT_CHECKED = "not checked on the pod: "
"""How a guard's description starts when the pod is not running (its checkpoints
cannot be listed; what is verified here follows): no verdict on the pod's side, so
the TUI's dialog says it as it is, not "NOT safely downloaded"."""


def _verified_here(host: str, pod: PodConfig) -> str:
    """What is verified here per session, from the index alone (reads no pod)."""
    parts = []
    for session in pod.sessions:
        copies = checkpoint_index.verified_here(host, session.name)
        parts.append(f"session {session.name}: {copies[0].remote_path.rstrip('/').rsplit('/', 1)[-1]} at "
                     f"{copies[0].local_path}" if copies else f"session {session.name}: none")
    return "verified here: " + "; ".join(parts)


async def check(config: Config, pod: PodConfig, steps: Mapping[str, int] | None = None, *,
                borrow: Borrow | None = None) -> tuple[bool, str]:
    """(ok, description) for tearing down `pod`; see the module docstring.

    `steps`: how far each session's training got, where the caller knows it (the TUI
    reads it from the log). A session with no checkpoint at all but steps behind it is
    progress a teardown loses, so it refuses then instead of calling it safe.
    `borrow`: the Fleet's links (`Fleet.borrow`); without it, a connection of its own."""
    if not pod.sessions:
        return True, "no sessions are configured on it, so gpuctl knows of no checkpoints to keep"
    host = checkpoint_index.host_identity(pod, config.defaults)
    verified: list[str] = []
    refusals: list[str] = []
    empty: list[str] = []
    try:
        async with _runner(config, pod, borrow) as runner:
            for session in pod.sessions:
                found = await list_checkpoints(runner, pod, session, settle=0.0)
                if not found:
                    empty.append(session.name)
                    continue
                ok, note = await _session_verdict(runner, host, session.name, found, (steps or {}).get(session.name))
                (verified if ok else refusals).append(note)
    except SshFailure as exc:
        if isinstance(exc, PodNotRunning):  # stopped or gone (the Fleet's borrow says so), not a network fault
            return False, f"{NOT_CHECKED}it is {exc.said}; {_verified_here(host, pod)}"
        return False, f"cannot check its checkpoints: {exc.message}"
    except (CheckpointListingFailed, UnsafeName) as exc:
        return False, f"cannot check its checkpoints: {exc}"
    known = steps or {}
    lost = [f"session {name} has no checkpoint yet: its {known[name]} step{'s' if known[name] != 1 else ''} "
            "will be lost" for name in empty if known.get(name)]
    if refusals or lost:
        return False, "; ".join(refusals + lost)
    parts = verified + ([f"no checkpoints in session{'s' if len(empty) > 1 else ''} {', '.join(empty)}"]
                        if empty else [])
    return True, "; ".join(parts)


async def _session_verdict(runner: Runner, host: str, session: str,
                           found: Sequence[Checkpoint], trained: int | None = None) -> tuple[bool, str]:
    """(ok, what to say) for one session's checkpoints (newest first, not empty).
    `trained`: the step the run reached, where known: the steps past the verified
    checkpoint are said to be lost (every stop loses them, so it is no refusal)."""
    entries = checkpoint_index.load()
    why_not: dict[str, str] = {}
    newest: Checkpoint | None = None
    copy: checkpoint_index.IndexEntry | None = None
    for c in found:
        entry = checkpoint_index.entry_for(host, c, entries=entries) if c.complete else None
        if entry is None:
            continue
        copy, why = await checkpoint_verify.confirm(runner, c, entry)
        if copy is not None:
            newest = c
            break
        why_not[c.name] = why
    ahead = found[:found.index(newest)] if newest is not None else list(found)
    writing = [c for c in found if not c.complete and (
        c in ahead or (newest is not None and c.mtime > newest.mtime))]
    unverified = next((c for c in ahead if c.complete), None)
    if copy is not None and newest is not None and not writing and unverified is None:
        since = trained - newest.step if trained is not None and newest.step is not None else 0
        lost = f" (the {since} step{'s' if since != 1 else ''} since step {newest.step} will be lost)" if since > 0 else ""
        return True, f"session {session}: {newest.name} verified at {copy.local_path}{lost}"
    clauses = []
    for c in writing:
        after = f" (newer than verified {newest.name})" if newest is not None else ""
        clauses.append(f"session {session}: {c.name} is still being written{after}")
    if unverified is not None:
        why = f" ({why_not[unverified.name]})" if unverified.name in why_not else ""
        if newest is not None:
            clauses.append(f"session {session}: {unverified.name} is newer than the newest verified copy "
                           f"({newest.name}){why}")
        else:
            clauses.append(f"session {session}'s newest checkpoint {unverified.name} has no verified "
                           f"local copy{why}")
    return False, "; ".join(clauses)


def guard_for(config: Config, steps: Mapping[str, int] | None = None, *, borrow: Borrow | None = None):
    """The guard for pods of `config` (what `provider_ops.teardown` and the TUI take);
    `steps` and `borrow` as for `check` (`Fleet.guard_for` passes its links)."""

    async def guard(pod: PodConfig) -> tuple[bool, str]:
        return await check(config, pod, steps, borrow=borrow)

    return guard


async def guard(pod: PodConfig, config: Config | None = None) -> tuple[bool, str]:
    """`check` for one pod. Pass `config` (or use `guard_for`): without it, `defaults:`
    are unknown, so a verified copy recorded under the config's default user or port
    may not be found, and the guard refuses (the safe side)."""
    return await check(config or Config(path=Path("<no config>"), defaults=Defaults(), pods=(pod,)), pod)
