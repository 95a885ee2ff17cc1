"""Download a checkpoint: pick it, fetch it resumably, prove the copy, record it.

The policy around `backends.transfer` (which only moves bytes):

1. **Pick.** List the session's checkpoints once (`settle=0`: a checkpoint modified in
   the last `FRESH_S` seconds, or a folder without its marker, is `writing` and refused;
   see `sessions.checkpoints.listing`). No name: the newest complete one.
2. **Skip** when the index (`sessions.checkpoints.index`) has a copy of this exact
   version (path, size, mtime) and `sessions.checkpoints.verify.confirm` finds it still
   holds the pod's content (each side re-hashed when its stat stamp moved): a pod file
   rewritten with its size and mtime kept, or a local copy overwritten, is fetched again.
3. **Where.** `DEST/<name>`, default `./checkpoints/<pod>/<session>/<name>`. The data
   goes to `<name>.part` (a folder: `<name>.part/` holding the files under their own
   names) and is renamed only after verification. A rerun finds the `.part` and each
   file continues from its size. Every local path is checked to stay under DEST, even
   through symlinks already there; remote names with `..`, absolute names in a
   folder listing and symlinks resolving outside the checkpoint are refused.
4. **Verify while fetching.** The pod's SHA-256 of every file starts at once, beside
   the transfer, on its own channel; the local SHA-256 runs in a thread that follows
   the data onto disk (including a resumed prefix). After the last byte both digests
   are usually ready. Then the checkpoint is stat'ed again on the pod: if its size or
   mtime moved, it was still being written, and the copy is dropped as such. The pod's
   hash runs between two stat stamps (`checkpoint_verify.bracketed_command`; a folder's
   file listing after a third): if they differ, the checkpoint changed meanwhile.
   A digest mismatch deletes the bad copy (a file's `.part`; in a folder, the files
   that differ) and says so. The transport decides how bytes move
   (`Transport.fetcher`) and where the hash runs beside them (`Transport.beside`):
   behind RunPod's shell-only proxy that is a PTY shell and a second shell on the
   same connection; this module never asks which transport it holds.
5. **Record** the verified copy in the index, with both stamps (so the next check
   hashes again only what changed).

One download per local target at a time (`sessions.checkpoints.target_lock`): a second
gpuctl wanting the same checkpoint in the same place waits for the first, then finds
its verified copy in the index at step 2 instead of fetching it again.

A local file or folder already at the destination that gpuctl did not put there is
never overwritten; one that gpuctl downloaded from an older version of the same
checkpoint (`best.pt` rewritten) is replaced once the new copy is verified.

(Somewhat past 400 lines: each step above is short, but their error cases are many,
and each gets a sentence a person can act on.)
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from backends.runner import Runner
from backends.ssh import SshFailure
from backends.transfer import FetchJob, TransferFailed, parse_sha256, sha256_command
from backends.transport import TransportUnsupported
from sessions.checkpoints import index, target_lock
from sessions.checkpoints.verify import (HASH_RATE, bracketed_command, confirm, local_digest, manifest_digest,
                                         split_bracketed)
from sessions.checkpoints.listing import (
    DIR,
    Checkpoint,
    RemoteFile,
    UnsafeName,
    check_relative,
    find_by_name,
    folder_command,
    list_checkpoints,
    newest_complete,
    parse_folder,
    parse_snapshot,
    snapshot_command,
)
from sessions.config.model import Config, PodConfig, SessionConfig
from sessions.link import pods
from sessions.link.pod_link import open_transport

ProgressFn = Callable[[int, int], None]

PART_SUFFIX = ".part"
PROGRESS_INTERVAL_S = 0.1
"""The caller's progress callback hears at most this often (and always at the end)."""


class TransferError(Exception):
    """A transfer (download or upload) that did not happen or did not verify; `str()` says why.

    Attributes:
        exit_code: 1 for the pod, the link or the copy; 2 for what the user asked.
    """

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class DownloadError(TransferError):
    """A download that did not happen or did not verify."""


class DownloadUsageError(DownloadError):
    """The request itself is wrong (no such checkpoint name, an unsafe name)."""

    exit_code = 2


class NoCompleteCheckpoint(DownloadError):
    """The session has no complete checkpoint on the pod."""


class CheckpointWriting(DownloadError):
    """The checkpoint is still being written (or changed during the download)."""


class UnsafeCheckpoint(DownloadError):
    """The pod listed a name or symlink that would leave the checkpoint or DEST."""


class VerificationFailed(DownloadError):
    """Size or SHA-256 of the local copy differs from the pod's; the copy was deleted."""


class TransferInterrupted(DownloadError):
    """The transfer stopped (connection lost, local disk); a rerun resumes it."""


@dataclass(frozen=True)
class DownloadResult:
    """What `download_checkpoint` did.

    Attributes:
        pod, session: names.
        checkpoint: the checkpoint, as listed.
        local_path: the verified local copy.
        skipped: True when a verified copy already existed (nothing moved).
        size: bytes in the local copy.
        transferred: bytes moved over the link by this call.
        resumed_from: bytes already there from an earlier, interrupted run.
        seconds: wall time from listing to verified.
        sha256: the file's digest; for a folder, the digest of its manifest.
        files: files in the copy.
        method: how the bytes moved ("ssh", "stream", "sftp", several joined by "+",
            "pty" through a shell-only proxy, "link" or "copy" from a verified local
            copy, or ""); see `backends.transfer`.
        copied_from: the verified local copy this one was hard-linked or copied from
            (an explicit `dest` elsewhere than that copy), None when bytes came from
            the pod or nothing moved.
    """

    pod: str
    session: str
    checkpoint: Checkpoint
    local_path: Path
    skipped: bool
    size: int
    transferred: int
    resumed_from: int
    seconds: float
    sha256: str
    files: int = 1
    method: str = ""
    copied_from: Path | None = None


def default_dest(config: Config, pod: PodConfig, session: SessionConfig, start_dir: Path | None = None) -> Path:
    """Where a session's checkpoints go when no `--dest` is given: its `download_dir`
    policy (default `checkpoints/{pod}/{session}`) with `{pod}` and `{session}` filled,
    relative to `start_dir` (None: the current directory, and the path stays relative).

    The one answer for `gpuctl download`, the TUI's `d` and watch's auto-download, so a
    manual download lands beside the automatic ones (the demo points it into its temp dir).
    """
    from sessions.config.policy_model import policies_for

    template = policies_for(config, pod, session).download_dir
    path = Path(template.replace("{pod}", pod.name).replace("{session}", session.name)).expanduser()
    return path if path.is_absolute() or start_dir is None else start_dir / path


def local_target(dest: Path, name: str) -> Path:
    """`dest/name`, refused unless it stays under `dest` once symlinks are resolved.

    Raises:
        UnsafeName: `name` is absolute, has `..`, or leads outside `dest`.
    """
    check_relative(name)
    base = Path(os.path.abspath(dest))
    target = base.joinpath(*[part for part in name.split("/") if part not in ("", ".")])
    real_base = os.path.realpath(base)
    real_target = os.path.realpath(target)
    if real_target != real_base and not real_target.startswith(real_base.rstrip(os.sep) + os.sep):
        raise UnsafeName(f"{name!r} would be written outside {base} (through a symlink there)")
    return target


def newest_verified(config: Config, pod: str | PodConfig, session: str | SessionConfig,
                    checkpoints: Sequence[Checkpoint]) -> tuple[Checkpoint | None, bool]:
    """The newest complete checkpoint and whether the index holds an untouched local
    copy of it (`checkpoint_index.lookup`).

    The cheap view: it reads the index only, so it cannot see a pod file rewritten
    behind an unchanged size and mtime. The teardown guard does not stop here; it
    confirms content with `sessions.checkpoints.verify.confirm`.
    """
    pod_cfg = config.pod(pod) if isinstance(pod, str) else pod
    newest = newest_complete(checkpoints)
    if newest is None:
        return None, False
    return newest, index.is_verified(index.host_identity(pod_cfg, config.defaults), newest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Progress:
    """Adds up per-file progress (files move concurrently) and calls the user's
    callback at most every 0.1 s, plus once when a file's last byte is written (so
    the caller sees each file land, and the last byte of all before the verification
    ends). A callback with a `file_landed(name, size)` method also hears each file
    once all of it is here (a plain line per file where there is no progress bar)."""

    def __init__(self, callback: ProgressFn | None, total: int, names: Sequence[str] = ("",)):
        self.callback = callback
        self.total = total
        self.names = list(names)
        self._done = [0] * len(self.names)
        self._whole = 0
        self._last = 0.0
        self._landed = -1
        self._told: set[int] = set()

    def file(self, index: int, done: int, size: int) -> None:
        if self.callback is None:
            return
        self._whole += done - self._done[index]
        self._done[index] = done
        landed = getattr(self.callback, "file_landed", None)
        if done == size and index not in self._told and landed is not None:
            self._told.add(index)
            landed(self.names[index], size)
        now = time.monotonic()
        whole = self._whole
        if now - self._last >= PROGRESS_INTERVAL_S or (done == size and whole != self._landed):
            self._last = now
            if done == size:
                self._landed = whole
            self.callback(whole, self.total)

    def final(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)


async def download_checkpoint(config: Config, pod: str | PodConfig, session: str | SessionConfig,
                              name: str | None = None, dest: str | os.PathLike[str] | None = None,
                              progress: ProgressFn | None = None, *, runner: Runner | None = None,
                              method: str = "auto") -> DownloadResult:
    """Download a session's checkpoint (default: the newest complete one), verified.

    Args:
        config: the loaded config (for defaults and host resolution).
        pod, session: names or config entries.
        name: the checkpoint's name as listed (or a unique basename); None = newest.
        dest: local folder (default `default_dest`); created when missing. Always
            honoured when given: a verified copy of the same version elsewhere is
            hard-linked (or copied) here and hashed, not fetched again.
        progress: `progress(done_bytes, total_bytes)`, at most every 0.1 s and once at
            the end; `done` includes bytes already there from an interrupted run.
        runner: a transport to use (`Fleet.borrow`: the live link's channels; default:
            the pod's link opens one connection, closed after).
        method: "auto", "parallel", "ssh", "stream" or "sftp" (see `backends.transfer`); a pod behind
            a shell-only proxy (RunPod's) takes "auto" or "pty".

    Raises:
        sessions.config.model.UnknownName: no such pod or session (a KeyError).
        DownloadError: and subclasses, each with a message and an `exit_code`.
        backends.ssh.SshFailure: the pod is unreachable.
    """
    pod_cfg = config.pod(pod) if isinstance(pod, str) else pod
    cfg = pod_cfg.session(session) if isinstance(session, str) else session
    if name is not None:
        try:
            check_relative(name.rstrip("/"))
        except UnsafeName as exc:
            raise DownloadUsageError(f"refusing checkpoint name: {exc}") from None
    if pods.is_local(pod_cfg):
        raise DownloadUsageError(
            f"pod {pod_cfg.name!r} is this machine (host: local): its checkpoints are already "
            "here; copy them with cp if you want them elsewhere")
    dest_dir = Path(dest) if dest is not None else default_dest(config, pod_cfg, cfg)
    explicit = dest is not None
    if runner is not None:
        return await _download(config, pod_cfg, cfg, name, dest_dir, progress, runner, method, explicit)
    async with open_transport(pod_cfg, config.defaults) as opened:
        return await _download(config, pod_cfg, cfg, name, dest_dir, progress, opened, method, explicit)


async def _pick(runner: Runner, pod: PodConfig, cfg: SessionConfig, name: str | None) -> Checkpoint:
    checkpoints = await list_checkpoints(runner, pod, cfg, settle=0)
    if name is not None:
        chosen = find_by_name(checkpoints, name)
        if chosen is None:
            known = ", ".join(c.name for c in checkpoints[:10]) or "none"
            raise DownloadUsageError(f"no checkpoint {name!r} in session {cfg.name!r} on pod {pod.name!r} "
                                     f"(found: {known})")
    else:
        chosen = newest_complete(checkpoints)
        if chosen is None:
            what = (f"{len(checkpoints)} found, all still being written" if checkpoints
                    else "none found; set the session's `checkpoints:` globs if they live elsewhere")
            raise NoCompleteCheckpoint(
                f"no complete checkpoint in session {cfg.name!r} on pod {pod.name!r} ({what})")
    if not chosen.complete:
        raise CheckpointWriting(f"checkpoint {chosen.name!r} on pod {pod.name!r} is still being written; "
                                "try again when it is finished")
    return chosen


async def _download(config: Config, pod: PodConfig, cfg: SessionConfig, name: str | None, dest: Path,
                    progress: ProgressFn | None, runner: Runner, method: str,
                    explicit_dest: bool = False) -> DownloadResult:
    started = time.monotonic()
    checkpoint = await _pick(runner, pod, cfg, name)
    try:
        final = local_target(dest, checkpoint.name)
    except UnsafeName as exc:
        raise UnsafeCheckpoint(str(exc)) from None
    async with target_lock.hold(final):  # another gpuctl on it: wait, then adopt its copy from the index
        return await _download_locked(pod, cfg, checkpoint, final, progress, runner, method, explicit_dest,
                                      index.host_identity(pod, config.defaults), started)


async def _download_locked(pod: PodConfig, cfg: SessionConfig, checkpoint: Checkpoint, final: Path,
                           progress: ProgressFn | None, runner: Runner, method: str, explicit_dest: bool,
                           host: str, started: float) -> DownloadResult:
    """Steps 2-5 of the module docstring, with `final`'s lock held."""
    done = index.entry_for(host, checkpoint, at=final)
    if done is not None:
        done, _ = await confirm(runner, checkpoint, done)
    elsewhere = done is not None and explicit_dest and not _same_file(Path(done.local_path), final)
    if done is not None and not elsewhere:
        local = Path(done.local_path)
        if progress is not None:
            progress(done.expected_local_bytes, done.expected_local_bytes)
        return DownloadResult(pod.name, cfg.name, checkpoint, local, True, done.expected_local_bytes, 0, 0,
                              time.monotonic() - started, done.sha256, done.files)
    ours = any(Path(e.local_path) == final for e in index.copies_of(host, checkpoint.path))
    if os.path.lexists(final) and not ours:
        raise DownloadUsageError(
            f"{final} already exists and is not a copy gpuctl downloaded and verified; "
            "move it away or pass another --dest")
    part = final.with_name(final.name + PART_SUFFIX)
    for path in (final, part):  # written into, renamed over: a planted link's target stays untouched
        if os.path.islink(path):
            raise UnsafeCheckpoint(f"refusing to write through the symlink {path}; "
                                   "remove it (its target is left alone)")
    if done is not None:  # a verified copy elsewhere, and the user named this dest
        return await _from_local_copy(pod, cfg, checkpoint, done, part, final, ours, progress, started)
    plan, listed_stamp = await _plan(runner, checkpoint, part)
    if os.path.lexists(part) and part.is_dir() != (checkpoint.kind == DIR):
        _remove(part)  # a file .part where a folder is wanted, or the reverse: stale
    outcome = await _fetch_and_verify(runner, pod, checkpoint, part, plan, progress, method, listed_stamp)
    local_bytes, files_digest, moved, resumed, methods, pod_stamp = outcome
    await _install_verified(part, final, files_digest, replace_old=ours)
    entry = index.record(index.IndexEntry(
        host=host, remote_path=checkpoint.path, size=checkpoint.size, mtime=checkpoint.mtime,
        local_path=str(final.absolute()), sha256=files_digest, files=len(plan),
        local_bytes=local_bytes, pod=pod.name, session=cfg.name,
        pod_stamp=pod_stamp, local_stamp=index.local_stamp(final) or ""))
    return DownloadResult(pod.name, cfg.name, checkpoint, final, False, local_bytes, moved, resumed,
                          time.monotonic() - started, entry.sha256, len(plan), "+".join(methods))


def _same_file(a: Path, b: Path) -> bool:
    """`a` and `b` name the same place (after resolving symlinks in their folders)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link `src` at `dst` (no bytes copied, instant for a 20 GB file); copy
    where a link cannot be made (another filesystem, a filesystem without links)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copyfile(src, dst, follow_symlinks=False)
    return dst


async def _from_local_copy(pod: PodConfig, cfg: SessionConfig, checkpoint: Checkpoint, done: index.IndexEntry,
                           part: Path, final: Path, ours: bool, progress: ProgressFn | None,
                           started: float) -> DownloadResult:
    """Put a verified local copy of this exact version at `final` (an explicit dest
    elsewhere) without asking the pod for its bytes again: hard links (else copies)
    into `.part`, hashed, renamed, recorded.

    The new copy is recorded as an `extra` entry beside the old one's (see
    `sessions.checkpoints.index`): the download folder's copy stays recorded and
    managed by `keep_local`, and pruning it leaves this one recorded.
    """
    source = Path(done.local_path)
    if os.path.lexists(part):
        _remove(part)  # a stale .part of a fetch into this dest: the verified copy is quicker
    final.parent.mkdir(parents=True, exist_ok=True)

    def make() -> str:
        if source.is_dir():
            shutil.copytree(source, part, symlinks=True, copy_function=_link_or_copy)
            inside = [p for p in part.rglob("*") if p.is_file()]
            linked = bool(inside) and all(os.path.samefile(p, source / p.relative_to(part)) for p in inside)
        else:
            _link_or_copy(str(source), str(part))
            linked = os.path.samefile(part, source)
        return "link" if linked else "copy"

    try:
        how = await asyncio.to_thread(make)
    except OSError as exc:
        _remove(part)
        raise DownloadError(f"cannot put the verified copy {source} at {final}: {exc.strerror or exc}") from None
    digest = await asyncio.to_thread(local_digest, part)
    if digest != done.sha256:
        _remove(part)
        raise VerificationFailed(
            f"the verified copy {source} no longer holds what was verified (it changed after its check); "
            f"nothing was put at {final}; run the same command again to download it from the pod")
    await _install_verified(part, final, done.sha256, replace_old=ours)
    entry = index.record(replace(done, local_path=str(final.absolute()), verified_at=0.0, extra=True,
                                 local_stamp=index.local_stamp(final) or ""))
    if how == "link":  # the source's files gained a link (their ctime moved); they were just hashed
        index.record(replace(done, local_stamp=index.local_stamp(source) or ""))
    size = done.expected_local_bytes
    if progress is not None:
        progress(size, size)
    return DownloadResult(pod.name, cfg.name, checkpoint, final, False, size, 0, 0,
                          time.monotonic() - started, entry.sha256, done.files, how, copied_from=source)


async def _plan(runner: Runner, checkpoint: Checkpoint,
                part: Path) -> tuple[list[tuple[RemoteFile, str, Path]], str | None]:
    """(file, remote path, local .part path) for every file of the checkpoint, and a
    folder's stamp from before its files were listed (None for a file)."""
    if checkpoint.kind != DIR:
        return [(RemoteFile("", checkpoint.size), checkpoint.path, part)], None
    listing, stamp, _ = split_bracketed(await runner.run(bracketed_command(folder_command(checkpoint.path),
                                                                            checkpoint.path)))
    if not listing.ok:
        raise DownloadError(f"cannot list the files of {checkpoint.name!r} on the pod: {listing.last_error_line()}")
    try:
        files = parse_folder(listing.stdout, checkpoint.name)
        return [(f, posixpath.join(checkpoint.path, f.rel), local_target(part, f.rel)) for f in files], stamp
    except UnsafeName as exc:
        raise UnsafeCheckpoint(f"refusing to download {checkpoint.name!r}: {exc}") from None
    except ValueError as exc:
        raise DownloadError(str(exc)) from None


async def _fetch_and_verify(runner: Runner, pod: PodConfig, checkpoint: Checkpoint, part: Path,
                            plan: list[tuple[RemoteFile, str, Path]], progress: ProgressFn | None,
                            method: str, listed_stamp: str | None) -> tuple[int, str, int, int, list[str], str]:
    """Fetch every file while the pod hashes them; return (bytes, digest, moved, resumed,
    methods, the pod's stamp of what it hashed)."""
    try:
        fetcher = runner.fetcher(method=method)
    except TransportUnsupported as exc:
        raise DownloadUsageError(f"pod {pod.name!r}: {exc}") from None
    except ValueError as exc:
        raise DownloadUsageError(str(exc)) from None
    total = sum(f.size for f, _, _ in plan)
    if checkpoint.kind == DIR:
        hash_root, hash_files = checkpoint.path, [f.rel for f, _, _ in plan]
    else:
        hash_root, hash_files = posixpath.dirname(checkpoint.path) or "/", [posixpath.basename(checkpoint.path)]
    remote_hash: asyncio.Task[Any] | None = None
    if hash_files:
        remote_hash = asyncio.ensure_future(_pod_hash(
            runner, bracketed_command(sha256_command(hash_root, hash_files), checkpoint.path),
            timeout=120 + total / HASH_RATE))
    meter = _Progress(progress, total, [f.rel or checkpoint.name for f, _, _ in plan])
    local_digests: list[str] = []
    moved = resumed = 0
    methods: list[str] = []
    try:
        async with fetcher:
            jobs = [FetchJob(remote_path, local, remote_file.size) for remote_file, remote_path, local in plan]
            for stats in await fetcher.fetch_all(jobs, meter.file):
                assert stats.sha256 is not None  # fetch_all hashes every file
                local_digests.append(stats.sha256)
                moved += stats.transferred
                resumed += stats.resumed_from
                if stats.method and stats.method not in methods:
                    methods.append(stats.method)
        if not plan:  # an empty folder: nothing to fetch, still a (trivial) copy
            part.mkdir(parents=True, exist_ok=True)
        remote = await remote_hash if remote_hash is not None else None
    except TransferFailed as exc:
        await _cancel(remote_hash)
        hint = "run the same command again to resume where it stopped" if exc.kind == "lost" else ""
        raise TransferInterrupted(f"download of {checkpoint.name!r} from pod {pod.name!r} stopped: "
                                  f"{exc.message}" + (f"; {hint}" if hint else "")) from None
    except SshFailure as exc:
        await _cancel(remote_hash)
        raise TransferInterrupted(f"download of {checkpoint.name!r} from pod {pod.name!r} stopped: "
                                  f"{exc.message}; run the same command again to resume") from None
    except BaseException:
        await _cancel(remote_hash)
        raise
    meter.final()
    await _check_unchanged(runner, pod, checkpoint, part)
    pod_stamp = ""
    if remote is not None:  # the pod hashed exactly when there were files to hash
        remote, before, pod_stamp = split_bracketed(remote)
        if before != pod_stamp or (listed_stamp is not None and listed_stamp != pod_stamp):
            _remove(part)
            raise CheckpointWriting(
                f"checkpoint {checkpoint.name!r} on pod {pod.name!r} changed while it was hashed "
                "(still being written?); the partial copy was deleted, try again when it is finished")
        _compare(checkpoint, part, hash_files, remote, local_digests)
    local_bytes = total
    digest = local_digests[0] if checkpoint.kind != DIR else manifest_digest(hash_files, local_digests)
    return local_bytes, digest, moved, resumed, methods, pod_stamp


async def _pod_hash(runner: Runner, command: str, timeout: float) -> Any:
    """The pod's hash command, run beside the transfer (`Transport.beside`: another
    channel over exec; a second shell through a PTY-only proxy, or, when the proxy
    refuses one, the same shell after the transfer)."""
    async with runner.beside() as beside:
        return await beside.run(command, timeout=timeout)


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def _check_unchanged(runner: Runner, pod: PodConfig, checkpoint: Checkpoint, part: Path) -> None:
    """Refuse a copy of a checkpoint whose size or mtime moved while we read it."""
    result = await runner.run(snapshot_command(checkpoint.path))
    now = parse_snapshot(result.stdout) if result.ok else None
    if now != (checkpoint.size, checkpoint.mtime):
        _remove(part)
        raise CheckpointWriting(
            f"checkpoint {checkpoint.name!r} on pod {pod.name!r} changed while it was downloaded "
            "(still being written?); the partial copy was deleted, try again when it is finished")


def _compare(checkpoint: Checkpoint, part: Path, rels: Sequence[str], remote: Any,
             local_digests: Sequence[str]) -> None:
    """Raise VerificationFailed, after deleting what is bad, unless every digest matches.

    A file checkpoint loses its whole `.part`. A folder loses only the files that
    differ: the others matched the pod's digests, so a rerun fetches just the bad ones
    (it still hashes the kept files again before it trusts the folder).
    """
    try:
        if remote is None or not remote.ok:
            why = remote.last_error_line() if remote is not None else "no answer"
            raise ValueError(f"the pod could not hash it: {why}")
        remote_digests = parse_sha256(remote.stdout, len(rels))
    except ValueError as exc:
        raise DownloadError(f"cannot verify {checkpoint.name!r}: {exc}; the copy is kept as {part}") from None
    bad = [(rel, pod, here) for rel, pod, here in zip(rels, remote_digests, local_digests) if pod != here]
    if not bad:
        return
    if checkpoint.kind == DIR:
        for rel, _, _ in bad:
            local_target(part, rel).unlink(missing_ok=True)
        deleted = f"the bad file{'s' if len(bad) > 1 else ''} in {part} {'were' if len(bad) > 1 else 'was'} deleted"
    else:
        _remove(part)
        deleted = f"the bad copy {part} was deleted"
    shown = "; ".join(f"{rel or checkpoint.name}: pod {pod[:16]}, local {here[:16]}" for rel, pod, here in bad[:3])
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    raise VerificationFailed(f"SHA-256 mismatch for {checkpoint.name!r}: {shown}{more}. {deleted[0].upper()}{deleted[1:]}; "
                             "run the same command again to download it afresh")


async def _install_verified(part: Path, final: Path, digest: str, *, replace_old: bool) -> None:
    """`_install`, where another gpuctl (the TUI beside `gpuctl watch`, both
    auto-downloading into one folder) may have fetched the same checkpoint into the same
    `.part` and renamed it first: its copy holding these very bytes is ours too. Anything
    else that moved the files away is said in words, not as an errno."""
    try:
        _install(part, final, replace_old=replace_old)
        return
    except OSError as exc:
        error = exc
    if os.path.lexists(final) and await asyncio.to_thread(local_digest, final) == digest:
        if os.path.lexists(part):
            _remove(part)
        return
    raise DownloadError(f"cannot put the verified copy at {final}: {error.strerror or error} (another gpuctl "
                        "downloading the same checkpoint into the same folder?); run the same command again")


def _install(part: Path, final: Path, *, replace_old: bool) -> None:
    """Rename the verified `.part` to its final name (replacing an older copy of ours)."""
    if replace_old and os.path.lexists(final):
        if final.is_dir() and not final.is_symlink():
            old = final.with_name(f"{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(part, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(part, final)
    else:
        os.rename(part, final)
    _fsync_dir(final.parent)
