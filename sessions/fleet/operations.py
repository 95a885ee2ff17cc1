"""The Fleet's pod operations: what the TUI's keys and the headless commands both call.

Each operation borrows the pod's link (`Fleet.borrow`, `sessions.link.pod_link`) and
hands the transport to the `sessions` module that knows the job, so the TUI, `gpuctl
watch` and `gpuctl download|resume|checkpoints|kill|logs|check|stop|teardown` run the
same code over the same connection: the monitor's live one in a followed Fleet (new
channels, no handshake), or the one connection a command's Fleet opens for all of
its steps (`Fleet.for_command`). Nothing here knows which front end asked.

A mixin of `sessions.fleet.facade.Fleet`, kept apart so the façade stays about
following pods and this file about acting on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.transport import Transport
    from sessions.checkpoints.download import DownloadResult, ProgressFn
    from sessions.checkpoints.listing import Checkpoint
    from sessions.checkpoints.resume import ResumeResult
    from sessions.checkpoints.upload import UploadResult
    from sessions.config.loader import Config
    from sessions.errors import SshFailure
    from sessions.events import EventStream, WatchEvent
    from sessions.preflight import CheckResult
    from sessions.tmux.control import SessionState


class Operations:
    """Pod operations over the pod's link; needs `config`, `events`, `_tell`, `borrow`, `link` and `refresh`.
    Each operation that changes something tells the fleet's event stream once it is done."""

    config: Config
    events: EventStream

    if TYPE_CHECKING:
        def borrow(self, pod_name: str) -> AbstractAsyncContextManager[Transport]: ...

        def refresh(self, pod_name: str | None = None) -> None: ...

        def link(self, pod_name: str) -> Any: ...

        def _tell(self, event: WatchEvent) -> None: ...

        async def unreachable_because(self, pod_name: str, failure: SshFailure) -> SshFailure: ...

    # -- checkpoints -----------------------------------------------------------------

    async def list_checkpoints(self, pod_name: str, session: str, *, settle: float | None = None
                               ) -> list[Checkpoint]:
        """The session's checkpoints, newest first, each marked when a verified copy is
        here (raises as `sessions.checkpoints.listing.list_checkpoints` does)."""
        from sessions.checkpoints.index import host_identity, mark_verified
        from sessions.checkpoints.listing import list_checkpoints

        pod = self.config.pod(pod_name)
        async with self.borrow(pod_name) as transport:
            found = await list_checkpoints(transport, pod, pod.session(session), settle=settle)
        return mark_verified(found, host_identity(pod, self.config.defaults))

    async def download(self, pod_name: str, session: str, name: str | None = None, dest: Any = None,
                       progress: ProgressFn | None = None) -> DownloadResult:
        """Download a checkpoint, verified (`sessions.checkpoints.download`), and tell
        the fleet's event stream (`checkpoint_downloaded`, as auto-download does), so the
        toast, the checkpoint pane and the notify targets follow from the one event."""
        from sessions.checkpoints.download import download_checkpoint
        from sessions.checkpoints.news import downloaded_event

        async with self.borrow(pod_name) as transport:
            result = await download_checkpoint(self.config, pod_name, session, name, dest, progress,
                                               runner=transport)
        if not result.skipped:
            self._tell(downloaded_event(result))
        return result

    async def upload(self, pod_name: str, local_path: Any, remote_path: str | None = None, *, force: bool = False,
                     progress: ProgressFn | None = None) -> UploadResult:
        """Upload a file or folder to the pod, verified (`sessions.checkpoints.upload`)."""
        from sessions.checkpoints.upload import upload

        async with self.borrow(pod_name) as transport:
            return await upload(self.config, pod_name, local_path, remote_path, force=force, progress=progress,
                                runner=transport)

    async def resume(self, pod_name: str, session: str, *, restart: bool = False) -> ResumeResult:
        """Relaunch the session from its newest complete checkpoint (`sessions.checkpoints.resume`),
        told on the event stream as `resumed` (`sessions.fleet.news`)."""
        from sessions.checkpoints.resume import resume
        from sessions.fleet.news import resumed_event

        async with self.borrow(pod_name) as transport:
            result = await resume(transport, self.config.pod(pod_name), session, restart=restart)
        self.refresh(pod_name)
        self._tell(resumed_event(pod_name, session, result))
        return result

    def guard_for(self, steps: Mapping[str, int] | None = None) -> Callable[[Any], Any]:
        """The teardown guard (`sessions.checkpoints.teardown_guard.check`) looking
        through this Fleet's links: its listing and hashing borrow the pod's connection."""
        from sessions.checkpoints import teardown_guard

        return teardown_guard.guard_for(self.config, steps=steps, borrow=self.borrow)

    async def teardown_check(self, pod_name: str, steps: Mapping[str, int] | None = None) -> tuple[bool, str]:
        """(ok, what is known) for tearing the pod down: see `teardown_guard.check`."""
        return await self.guard_for(steps)(self.config.pod(pod_name))

    # -- tmux sessions ---------------------------------------------------------------

    async def session_state(self, pod_name: str, session: str) -> SessionState:
        """Whether the tmux session exists, runs, and how it exited (`tmux.control.session_state`)."""
        from sessions.tmux import control

        async with self.borrow(pod_name) as transport:
            return await control.session_state(transport, session, pod_name=pod_name)

    async def what_runs(self, pod_name: str, pane_pid: int) -> str | None:
        """What a tmux pane really runs (`sessions.tmux.pane_process`), None when unknown."""
        from sessions.tmux.pane_process import what_runs

        async with self.borrow(pod_name) as transport:
            return await what_runs(transport, pane_pid)

    async def logs(self, pod_name: str, path: str, *, lines: int, follow: bool,
                   on_notice: Callable[[str], None] = lambda _msg: None) -> AsyncIterator[bytes]:
        """A log byte for byte, last `lines` lines then (with `follow`) what is appended,
        reconnecting through the pod's link (`sessions.tmux.log_stream`). A pod not
        running is said as such (`unreachable_because`), as for every operation."""
        from sessions.errors import SshFailure
        from sessions.tmux.log_stream import stream_log

        pod = self.config.pod(pod_name)
        try:
            async for chunk in stream_log(pod, self.config.defaults, path, lines=lines, follow=follow,
                                          on_notice=on_notice, link=self.link(pod_name)):
                yield chunk
        except SshFailure as exc:
            raise await self.unreachable_because(pod_name, exc) from exc

    # -- the pod itself --------------------------------------------------------------

    async def check(self, pod_name: str, **options: Any) -> list[CheckResult]:
        """The pre-flight check (`sessions.preflight.run_checks`; options as it takes them)."""
        from sessions.preflight import run_checks

        async with self.borrow(pod_name) as transport:
            return await run_checks(transport, self.config.pod(pod_name), **options)
