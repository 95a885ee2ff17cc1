"""Upload a local file or folder to a pod: parallel, resumable, verified, atomic.

People move data up too (datasets, code, configs); the seeds' own guides told them to
`scp` it. This is `gpuctl upload POD LOCAL_PATH [REMOTE_PATH]`, over the same link
and the same engine as downloads (`backends.upload_transfer`):

1. **Where.** REMOTE_PATH (default: the pod's first session's workdir) names a folder
   that exists on the pod: the upload lands inside it under its own name, as `cp` and
   `scp` do; otherwise REMOTE_PATH is the new name itself. A REMOTE_PATH with `..` is
   refused (path traversal), and so is a local symlink that leads outside the folder
   being uploaded (its target is not what the user named).
2. **Never over anything** already there unless `force`: then a file is replaced in one
   rename, a folder swapped for the new one whole.
3. **Into `.part`** on the pod (`TARGET.part`, a folder's files under their own names
   inside `TARGET.part/`), in ranges over several channels of the pod's connection
   (one at a time through RunPod's shell-only proxy: slower, and `method` says "pty").
   The pod keeps a record of the ranges it holds, so a rerun after any interruption
   sends only the rest; each range's CRC-32 is compared on both ends.
4. **Verify**: SHA-256 of every file here (in a thread, while sending) and on the pod
   (as it is written when a file streams whole through the OpenSSH client, else once
   it is all there); a local file changed meanwhile is refused. A mismatch drops
   the bad file's `.part` and says so.
5. **Rename** into place on the pod (atomic; a folder by renaming its `.part` folder).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from backends.runner import Runner
from backends.ssh import SshFailure
from backends.transfer import TransferFailed, parse_sha256, sha256_command, sha256_file
from backends.transport import TransportUnsupported
from backends.upload_transfer import SendJob, hexpath, parse_started, pod_words, run_pod
from sessions.checkpoints.download import TransferError
from sessions.checkpoints.verify import HASH_RATE
from sessions.config.model import Config, PodConfig
from sessions.link import pods
from sessions.link.pod_link import open_transport

ProgressFn = Callable[[int, int], None]

PART_SUFFIX = ".part"


class UploadError(TransferError):
    """An upload that did not happen or did not verify."""


class UploadRefused(UploadError):
    """The request itself is refused: no such local path, a path leaving its folder,
    `..` in REMOTE_PATH, or something already there without `force`."""

    exit_code = 2


@dataclass(frozen=True)
class UploadResult:
    """What `upload` did.

    Attributes:
        pod: the pod's name.
        local_path: what was uploaded.
        remote_path: where it is now on the pod.
        size: bytes in all its files.
        files: files uploaded.
        transferred: bytes sent by this call.
        resumed_from: bytes the pod already held from an interrupted run.
        seconds: wall time.
        method: "parallel" (exec channels), "parallel-ssh" (sessions of an OpenSSH master,
            a big upload on a far link) or "pty" (through a shell-only proxy).
        replaced: something was at `remote_path` before (`force`).
    """

    pod: str
    local_path: Path
    remote_path: str
    size: int
    files: int
    transferred: int
    resumed_from: int
    seconds: float
    method: str
    replaced: bool = False


def _local_files(local: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every file to send; a file alone has the name "".

    Raises:
        UploadRefused: missing, not a file or folder, or a symlink leading outside.
    """
    if not local.exists():
        raise UploadRefused(f"{local} does not exist")
    if local.is_file():
        return [("", local)]
    if not local.is_dir():
        raise UploadRefused(f"{local} is neither a file nor a folder")
    root = os.path.realpath(local)
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(local):
        for name in sorted(dirs + files):
            full = Path(folder, name)
            rel = full.relative_to(local).as_posix()
            if full.is_symlink():
                real = os.path.realpath(full)
                if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
                    raise UploadRefused(f"{full} is a symlink leading outside {local}; refusing to upload "
                                        "what it points to")
                if os.path.isdir(full):
                    raise UploadRefused(f"{full} is a symlink to a folder; upload that folder itself")
            if name in files:
                if not full.is_file():
                    raise UploadRefused(f"{full} is not a regular file")
                found.append((rel, full))
    return sorted(found)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _check_remote(remote: str) -> None:
    if "\x00" in remote or not remote.strip():
        raise UploadRefused("REMOTE_PATH is empty")
    if ".." in remote.split("/"):
        raise UploadRefused(f"refusing REMOTE_PATH {remote!r}: '..' would leave the folder named (path traversal)")


async def upload(config: Config, pod: str | PodConfig, local_path: str | os.PathLike[str],
                 remote_path: str | None = None, *, force: bool = False, progress: ProgressFn | None = None,
                 runner: Runner | None = None) -> UploadResult:
    """Upload `local_path` (a file or a folder) to the pod, verified (module docstring).

    Args:
        config: the loaded config.
        pod: name or config entry.
        local_path: the file or folder here.
        remote_path: a folder on the pod to put it in, or its new name there; None:
            the pod's first session's workdir.
        force: replace what is already at the destination.
        progress: `progress(done_bytes, total_bytes)`; `done` counts what the pod
            already held from an interrupted run.
        runner: a transport to use (`Fleet.borrow`); default: one connection, closed after.

    Raises:
        sessions.config.model.UnknownName: no such pod (a KeyError).
        UploadError: and `UploadRefused`, each with a message and an `exit_code`.
        backends.ssh.SshFailure: the pod is unreachable.
    """
    pod_cfg = config.pod(pod) if isinstance(pod, str) else pod
    if pods.is_local(pod_cfg):
        raise UploadRefused(f"pod {pod_cfg.name!r} is this machine (host: local): copy files with cp")
    local = Path(local_path)
    files = _local_files(local)
    if remote_path is None:
        if not pod_cfg.sessions or not pod_cfg.sessions[0].workdir:
            raise UploadRefused(f"pod {pod_cfg.name!r} has no session with a workdir to upload into; "
                                "name the REMOTE_PATH")
        remote_path = pod_cfg.sessions[0].workdir
    _check_remote(remote_path)
    if runner is not None:
        return await _upload(pod_cfg, local, files, remote_path, force, progress, runner)
    async with open_transport(pod_cfg, config.defaults) as opened:
        return await _upload(pod_cfg, local, files, remote_path, force, progress, opened)


async def _upload(pod: PodConfig, local: Path, files: list[tuple[str, Path]], remote: str, force: bool,
                  progress: ProgressFn | None, runner: Runner) -> UploadResult:
    started = time.monotonic()
    try:
        sender = runner.sender()
    except TransportUnsupported as exc:
        raise UploadRefused(f"pod {pod.name!r}: {exc}") from None
    name = local.resolve().name if local.name in ("", ".", "..") else local.name
    inside = posixpath.join(remote, name)
    try:  # what REMOTE_PATH is, and what is at REMOTE_PATH/name, in one round trip
        remote_kind, inside_kind = (await run_pod(runner, "kind", hexpath(remote), hexpath(inside))).split()
        target, target_kind = (inside, inside_kind) if remote_kind == "dir" else (remote.rstrip("/"), remote_kind)
    except TransferFailed as exc:
        raise UploadError(f"pod {pod.name!r}: cannot look at {remote}: {exc.message}") from None
    except ValueError:
        raise UploadError(f"pod {pod.name!r}: no answer about {remote}") from None
    exists = target_kind != "none"
    if exists and not force:
        raise UploadRefused(f"{target} already exists on pod {pod.name!r}; pass --force to replace it")
    folder = local.is_dir()
    part = target + PART_SUFFIX
    root = part if folder else (posixpath.dirname(target) or ".")
    stamps = {rel: _stamp(path) for rel, path in files}
    jobs = [SendJob(path, posixpath.join(part, rel) if folder else part, stamps[rel][0],
                    sender.chunk_for(stamps[rel][0])) for rel, path in files]
    total = sum(j.size for j in jobs)
    local_hashes = asyncio.ensure_future(asyncio.to_thread(lambda: [sha256_file(p) for _, p in files]))
    try:
        # The root (a folder's .part folder) first: every file must stay under it.
        kept = parse_started(await run_pod(runner, "start", hexpath(root), "1" if folder else "0", stdin_lines=[
            f"{hexpath(j.part)} {j.size} {j.chunk}" for j in jobs]), len(jobs))
        for job, have in zip(jobs, kept):
            job.kept = have
        resumed = sum(min(j.chunk, j.size - off) for j in jobs for off in j.kept)
        meter = _Meter(progress, total, [rel or name for rel, _ in files])
        sent = await sender.send_all(jobs, meter.file)
        meter.final()
        digests = await local_hashes
        if any(_stamp(path) != stamps[rel] for rel, path in files):
            raise UploadError(f"{local} changed while it was uploaded; run the same command again once it "
                              "stays still")
        await _verify(runner, pod, root, folder, jobs, digests, total)
        await run_pod(runner, "finish", hexpath(part), hexpath(target), "1" if force else "0",
                      stdin_lines=[hexpath(j.part) for j in jobs] if folder else ())
    except TransferFailed as exc:
        hint = "; run the same command again to resume" if exc.kind in ("lost", "local") else ""
        raise UploadError(f"upload of {local} to pod {pod.name!r} stopped: {exc.message}{hint}") from None
    except SshFailure as exc:
        raise UploadError(f"upload of {local} to pod {pod.name!r} stopped: {exc.message}; "
                          "run the same command again to resume") from None
    finally:
        if not local_hashes.done():
            local_hashes.cancel()
        await asyncio.gather(local_hashes, return_exceptions=True)
    return UploadResult(pod.name, local, target, total, len(jobs), sent, resumed, time.monotonic() - started,
                        sender.kind, replaced=exists)


async def _verify(runner: Runner, pod: PodConfig, root: str, folder: bool, jobs: list[SendJob],
                  digests: list[str], total: int) -> None:
    """The pod's SHA-256 of every `.part` against the local files'; a file that differs
    loses its `.part` (and record) and the upload fails saying which."""
    rels = [posixpath.relpath(j.part, root) for j in jobs] if folder else [posixpath.basename(jobs[0].part)]
    # Not hashed on the way; or hashed on the way but differing, where a range sent
    # again after the pod's follower read it damaged (`ParallelSender`) reads as a
    # mismatch: those the pod hashes afresh before anything is called bad.
    ask = [rel for job, rel, here in zip(jobs, rels, digests) if job.pod_sha256 != here]
    hashed: dict[str, str] = {}
    if ask:
        result = await runner.run(sha256_command(root, ask), timeout=120 + total / HASH_RATE)
        try:
            if not result.ok:
                raise ValueError(f"the pod could not hash it: {pod_words(result)}")
            hashed = dict(zip(ask, parse_sha256(result.stdout, len(ask))))
        except ValueError as exc:
            raise UploadError(f"cannot verify the upload on pod {pod.name!r}: {exc}") from None
    remote = [hashed.get(rel) or job.pod_sha256 for job, rel in zip(jobs, rels)]
    bad = [(job, rel) for job, rel, here, there in zip(jobs, rels, digests, remote) if here != there]
    if bad:
        await run_pod(runner, "drop", stdin_lines=[hexpath(job.part) for job, _ in bad])
        shown = ", ".join(rel for _, rel in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UploadError(f"SHA-256 mismatch on pod {pod.name!r} for {shown}: the bad .part was deleted; "
                          "run the same command again to send it afresh")


class _Meter:
    """Adds up per-file progress for the caller's `progress(done, total)`, at most
    every 0.1 s and once at the end; a callback with `file_landed(name, size)` hears
    each file once the pod holds all of it."""

    def __init__(self, callback: ProgressFn | None, total: int, names: list[str]):
        self.callback = callback
        self.total = total
        self.names = names
        self._done = [0] * len(names)
        self._whole = 0
        self._last = 0.0
        self._told: set[int] = set()

    def file(self, index: int, done: int, size: int) -> None:
        self._whole += done - self._done[index]
        self._done[index] = done
        landed = getattr(self.callback, "file_landed", None)  # a line per file, where there is no bar
        if done == size and index not in self._told and landed is not None:
            self._told.add(index)
            landed(self.names[index], size)
        now = time.monotonic()
        if self.callback is not None and now - self._last >= 0.1:
            self._last = now
            self.callback(self._whole, self.total)

    def final(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)
