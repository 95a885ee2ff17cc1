"""Auto-download: fetch each new complete checkpoint of a session, verified, once.

Per session whose `auto_download` is `newest` or `all`, one task runs a round as soon
as the pod's agent reports that session's checkpoints changed (`offer`: the agent
watches the globs and lists within seconds of a checkpoint becoming complete, see
`sessions.checkpoints.agent_watch`), using that report as the round's listing, and
otherwise lists them itself every `checkpoint_interval_s` while the pod is online (the
upper bound, and the only clock on pods without the agent; the previous listing is
passed along, so a checkpoint still growing is seen as `writing` without an extra
wait). It downloads through the same `download_checkpoint` as `gpuctl download`:
resumable `.part`, sha256 on both ends, recorded in the verified index, so neither
watch nor a person fetches it twice.

* `newest`: only the newest complete checkpoint. `all`: every complete one not yet
  copied, oldest first, the ones present when watch starts included (with
  `keep_local: N`, only among the newest N: older ones would be pruned on arrival).
* The first listing of a session watch has never seen announces only its newest
  checkpoint; later listings announce each new one (`checkpoint_found`).
* `keep_local: N` deletes the oldest local copies *in the download folder* beyond
  the newest N verified ones, forgets them in the index and says so
  (`checkpoint_pruned`); a copy elsewhere (a manual `gpuctl download --dest`) is
  never touched, nor anything on the pod.
* A failing listing or download raises one `alert` (`download_failed`) and is
  retried next round; the next success clears it.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

from backends.ssh import SshFailure
from sessions.checkpoints import index as checkpoint_index
from sessions.checkpoints.listing import Checkpoint, CheckpointListingFailed, list_checkpoints, newest_complete
from sessions.checkpoints.download import (
    DownloadError,
    DownloadResult,
    NoCompleteCheckpoint,
    default_dest,
    download_checkpoint,
)
from sessions.checkpoints.news import downloaded_event, pruned_event
from sessions.events import EventKind
from sessions.snapshot import PodSnapshot
from sessions.watch.context import WatchContext
from sessions.watch.state import session_key


def download_dir(ctx: WatchContext, pod: str, session: str) -> Path:
    """`policies.download_dir` with `{pod}`/`{session}` filled, rooted at the start dir
    (`sessions.checkpoints.download.default_dest`, the same answer `gpuctl download` and `d` use)."""
    pod_cfg = ctx.config.pod(pod)
    return default_dest(ctx.config, pod_cfg, pod_cfg.session(session), ctx.start_dir)


class AutoDownload:
    """One polling task per session with auto-download on."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._wake: dict[tuple[str, str], asyncio.Event] = {}
        self._failing: set[tuple[str, str]] = set()
        self._reported: dict[tuple[str, str], list[Checkpoint]] = {}

    def ensure(self, pod: str) -> None:
        """Start the tasks of a pod's sessions that want auto-download (idempotent)."""
        if self.ctx.config.pod(pod).is_local:
            return  # `host: local`: the checkpoints are already on this machine
        for cfg in self.ctx.config.pod(pod).sessions:
            key = (pod, cfg.name)
            if key in self._tasks or self.ctx.policies(pod, cfg.name).auto_download == "off":
                continue
            self._wake[key] = asyncio.Event()
            self._tasks[key] = asyncio.create_task(self._loop(pod, cfg.name),
                                                   name=f"gpuctl-autodl-{pod}-{cfg.name}")

    def poke(self, pod: str, session: str | None = None) -> None:
        """List now instead of at the next interval (a session exited, budget reached)."""
        for (p, s), wake in self._wake.items():
            if p == pod and session in (None, s):
                wake.set()

    def offer(self, before: PodSnapshot | None, pod: PodSnapshot) -> None:
        """Run a session's round now on the checkpoints the agent just reported, when
        they differ from its report in `before` (they changed on the pod)."""
        old = {s.name: s.checkpoints for s in before.sessions} if before is not None else {}
        for snap in pod.sessions:
            key = (pod.name, snap.name)
            if snap.checkpoints is None or key not in self._wake or snap.checkpoints == old.get(snap.name):
                continue
            self._reported[key] = list(snap.checkpoints)
            self._wake[key].set()

    async def _loop(self, pod: str, session: str) -> None:
        previous: list[Checkpoint] | None = None
        key = (pod, session)
        while True:
            await self.ctx.wait_online(pod)
            if self.ctx.may_act(pod):
                previous = await self._round(pod, session, previous, self._reported.pop(key, None))
            wake = self._wake[key]
            try:
                await asyncio.wait_for(wake.wait(), self.ctx.policies(pod, session).checkpoint_interval_s)
            except asyncio.TimeoutError:
                pass
            wake.clear()

    async def _round(self, pod: str, session: str, previous: list[Checkpoint] | None,
                     reported: list[Checkpoint] | None = None) -> list[Checkpoint] | None:
        """List (or take the agent's `reported` listing), announce, download what is wanted."""
        ctx = self.ctx
        pod_cfg = ctx.config.pod(pod)
        try:
            async with ctx.lock(pod, "download"):
                async with ctx.fleet.borrow(pod) as runner:  # the pod's live link: no new handshake
                    listing = reported if reported is not None else await list_checkpoints(
                        runner, pod_cfg, session, previous=previous)
                    self._announce(pod, session, listing)
                    for checkpoint in self._wanted(pod, session, listing):
                        try:
                            result = await download_checkpoint(
                                ctx.config, pod_cfg, session, checkpoint.name,
                                dest=download_dir(ctx, pod, session), runner=runner)
                        except DownloadError:
                            if await self._rotated_away(runner, pod_cfg, session, checkpoint):
                                continue
                            raise
                        self._downloaded(pod, session, result)
        except (SshFailure, CheckpointListingFailed, DownloadError, OSError) as exc:
            self._failed(pod, session, exc)
            return previous
        self._recovered(pod, session)
        return listing

    @staticmethod
    async def _rotated_away(runner, pod_cfg, session: str, checkpoint: Checkpoint) -> bool:
        """Whether a checkpoint whose download failed is simply gone from the pod: a
        trainer keeping its newest k (Lightning's save_top_k, HF's save_total_limit)
        deletes one while it is fetched. That is routine, not a failed download: the
        next round fetches what replaced it."""
        try:
            now = await list_checkpoints(runner, pod_cfg, session, settle=0.0)
        except (SshFailure, CheckpointListingFailed):
            return False
        return all(c.name != checkpoint.name for c in now)

    def _announce(self, pod: str, session: str, listing: list[Checkpoint]) -> None:
        key = session_key(pod, session)
        complete = [c for c in listing if c.complete]
        first_look = key not in self.ctx.state.seen
        seen = self.ctx.state.seen.setdefault(key, [])
        fresh = [c for c in complete if c.name not in seen]
        seen.extend(c.name for c in fresh)
        if first_look:
            fresh = fresh[:1]  # only the newest is news (the listing is newest first)
        elif not fresh:
            return
        self.ctx.state.save()
        for c in reversed(fresh):
            step = f" (step {c.step})" if c.step is not None else ""
            self.ctx.say(EventKind.CHECKPOINT_FOUND, pod, f"new checkpoint {c.name}{step}", session,
                         checkpoint=c.path, name=c.name, step=c.step, size=c.size)

    def _wanted(self, pod: str, session: str, listing: list[Checkpoint]) -> list[Checkpoint]:
        mode = self.ctx.policies(pod, session).auto_download
        if mode == "newest":
            newest = newest_complete(listing)
            candidates = [newest] if newest else []
        else:
            complete = [c for c in listing if c.complete]  # newest first
            keep = self.ctx.policies(pod, session).keep_local
            # Beyond the newest `keep_local`, a copy would be pruned as soon as it landed,
            # and fetched again the next round (the index forgot it): every round, forever.
            candidates = list(reversed(complete if keep is None else complete[:keep]))
        host = checkpoint_index.host_identity(self.ctx.config.pod(pod), self.ctx.config.defaults)
        marked = checkpoint_index.mark_verified(candidates, host)
        return [c for c in marked if not c.verified_local]

    def _downloaded(self, pod: str, session: str, result: DownloadResult) -> None:
        key = session_key(pod, session)
        done = self.ctx.state.downloaded.setdefault(key, [])
        if result.checkpoint.name not in done:
            done.append(result.checkpoint.name)
            self.ctx.state.save()
        if not result.skipped:
            self.ctx.emit(downloaded_event(result, self.ctx.clock()))
        keep = self.ctx.policies(pod, session).keep_local
        if keep is not None:
            prune(self.ctx, pod, session, keep)

    def _failed(self, pod: str, session: str, exc: Exception) -> None:
        if (pod, session) in self._failing:
            return
        self._failing.add((pod, session))
        self.ctx.say(EventKind.ALERT, pod, f"auto-download failed: {exc}; retrying every round", session,
                     alert="download_failed", value=None, threshold=None)

    def _recovered(self, pod: str, session: str) -> None:
        if (pod, session) in self._failing:
            self._failing.discard((pod, session))
            self.ctx.say(EventKind.ALERT_CLEARED, pod, "auto-download works again", session,
                         alert="download_failed")

    async def download_newest(self, pod: str, session: str) -> DownloadResult | None:
        """Fetch the newest complete checkpoint now (the budget's last act); None when
        the session has none. Raises what `download_checkpoint` raises."""
        try:
            async with self.ctx.lock(pod, "download"):
                result = await download_checkpoint(self.ctx.config, pod, session,
                                                   dest=download_dir(self.ctx, pod, session))
        except NoCompleteCheckpoint:
            return None
        self._downloaded(pod, session, result)
        return result

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def prune(ctx: WatchContext, pod: str, session: str, keep: int) -> list[Path]:
    """Delete this session's verified local copies in its download folder beyond the
    newest `keep` (by step, then the pod's mtime); returns what was deleted, each told
    as a `checkpoint_pruned` event once the index has forgotten it (a pane that reads
    the index then sees the copy gone)."""
    folder = download_dir(ctx, pod, session).resolve()
    host = checkpoint_index.host_identity(ctx.config.pod(pod), ctx.config.defaults)
    ours = [e for e in checkpoint_index.load().values()
            if e.host == host and folder in Path(e.local_path).resolve().parents]
    ours.sort(key=lambda e: (e.mtime, e.verified_at), reverse=True)
    doomed = ours[keep:]
    # A person's --dest copy hard-linked from a doomed one: unlinking moves its ctime, not
    # its bytes; its stamp is refreshed below when it was as hashed before (else it would
    # read as touched, and be re-hashed whole, for nothing).
    gone = {(e.host, e.remote_path, e.size, e.mtime) for e in doomed}
    linked = [e for e in checkpoint_index.load().values()
              if e.extra and (e.host, e.remote_path, e.size, e.mtime) in gone and checkpoint_index.untouched(e)]
    removed = []
    for entry in doomed:
        path = Path(entry.local_path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if doomed:
        checkpoint_index.forget([e.key for e in doomed])
    for entry in linked:
        if entry not in doomed:
            checkpoint_index.record(replace(entry, local_stamp=checkpoint_index.local_stamp(Path(entry.local_path)) or ""))
    for entry in doomed:
        ctx.emit(pruned_event(pod, session, entry, keep, ctx.clock()))
    return removed
