"""Auto-resume: relaunch a failed or preempted session from its newest checkpoint.

It must never loop. Three brakes, all kept in the state file so restarting `watch`
does not release them:

* at most `max_restarts` restarts per session, ever (not per hour: a run that
  crashes every ten minutes after a little progress should wake a person, not burn
  a week of GPU time);
* the wait before restart n is `backoff_s * 2**(n-1)` (capped at an hour), so a
  pod that keeps failing is retried less and less often;
* a resumed run that exits again before its step moved past the checkpoint it
  resumed from is not restarted again: the checkpoint or the code is broken, and
  relaunching will not fix it. Watch raises an alert and leaves it to a person.

Triggers: the session exits with a non-zero status, or the pod comes back after a
preemption or outage and a session that was running before is gone, or (only with
`on_hang_minutes` set) a running session whose step has been frozen that long is
diagnosed `hung` (`sessions.health.stall`: alive, burning CPU or waiting on a pinned
GPU): it is reported with the evidence, killed, and restarted through the same brakes.
Every new stall is diagnosed once and told (`stall_diagnosis`) whatever the policy, and
so is a run whose rate fell under 30 % of its usual (`slow`, `sessions.health.stall.SlowWatch`). A session that
ends with status 0 finished; one killed by hand while its pod stayed up was meant
to stop. Neither is resumed. A session lost before its first checkpoint is started
again from the beginning with its `command` (that counts as a restart too).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backends.ssh import SshFailure
from sessions.checkpoints import resume as resume_mod
from sessions.tmux import control as sc
from sessions.events import EventKind
from sessions.health.stall import SlowWatch
from sessions.snapshot import SessionSnapshot, SessionState
from sessions.watch.context import WatchContext

MAX_BACKOFF_S = 3600.0
HANG_RECHECK_S = 300.0
"""A frozen session not found `hung` is looked at again after this long (one exec each)."""


class AutoResume:
    """Decides on and performs restarts for every session of the fleet."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx
        self._pending: dict[tuple[str, str], asyncio.Task] = {}
        self._first_step: dict[tuple[str, str], int] = {}
        """(pod, session) -> the first step seen since its last restart."""
        self._hang_checked: dict[tuple[str, str], float] = {}
        self._slow: dict[tuple[str, str], SlowWatch] = {}
        self._told: dict[tuple[str, str], float | None] = {}
        """(pod, session) -> the `stuck_since` of the stall last diagnosed and told."""
        self._hang_tasks: dict[tuple[str, str], asyncio.Task] = {}
        self.stale: dict[tuple[str, str], tuple] = {}
        """(pod, session) -> (created, pid) of the exited pane a restart replaced: until
        the agent lists the new pane, snapshots still show the old one, which must not
        count as the new run's exit."""

    def note_progress(self, pod: str, session: SessionSnapshot) -> None:
        """Mark a resumed session as having progressed once its step moves past the
        checkpoint it resumed from (the first step seen after the restart may be the
        old run's last line, so a change is required, not just a value)."""
        restarts = self.ctx.state.restarts.get(f"{pod}/{session.name}")
        if restarts is None or restarts.progressed or session.progress is None:
            return
        step = session.progress.step
        if step is None:
            return
        key = (pod, session.name)
        if key not in self._first_step:
            self._first_step[key] = step
            return
        if step != self._first_step[key] and (restarts.resumed_step is None or step > restarts.resumed_step):
            restarts.progressed = True
            restarts.gave_up = None
            self.ctx.state.save()

    def consider(self, pod: str, session_name: str, reason: str) -> None:
        """A session stopped for `reason`; restart it if the policy and brakes allow."""
        ctx = self.ctx
        try:
            cfg = ctx.config.pod(pod).session(session_name)
        except KeyError:
            return  # adopted, not configured: gpuctl does not know how to resume it
        policy = ctx.policies(pod, session_name).auto_resume
        if not policy.enabled or not ctx.may_act(pod) or (pod, session_name) in self._pending:
            return
        restarts = ctx.state.restarts_of(pod, session_name)
        if restarts.gave_up:
            return
        if not cfg.resume:
            self._give_up(pod, session_name, "no_resume_template",
                          f"cannot auto-resume {session_name!r}: it has no `resume:` template in the config")
            return
        if restarts.count > 0 and not restarts.progressed:
            self._give_up(pod, session_name, "resume_failed",
                          f"{session_name!r} failed again before making progress after restart "
                          f"{restarts.count} of {policy.max_restarts}; not restarting it (check the "
                          "checkpoint and the log)")
            return
        if restarts.count >= policy.max_restarts:
            self._give_up(pod, session_name, "restarts_exhausted",
                          f"{session_name!r} stopped again after {restarts.count} automatic restarts "
                          f"(max_restarts {policy.max_restarts}); not restarting it")
            return
        wait = min(MAX_BACKOFF_S, policy.backoff_s * 2 ** restarts.count)
        task = asyncio.create_task(self._restart_later(pod, session_name, reason, wait),
                                   name=f"gpuctl-resume-{pod}-{session_name}")
        key = (pod, session_name)
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._pending.pop(key, None))

    def consider_hang(self, pod: str, session: SessionSnapshot, now: float | None = None) -> None:
        """Called with every running session. A newly stalled one is diagnosed once (its
        `stuck_since`), and the verdict told as a `stall_diagnosis` alert with the
        evidence (hung, idle, dead, or none fits); with `on_hang_minutes`, one frozen that
        long is diagnosed again (at most once per `HANG_RECHECK_S`) and, when hung,
        restarted (see the module docstring). Each diagnosis is one exec on the pod."""
        if session.state != SessionState.RUNNING:
            return
        key = (pod, session.name)
        now = time.time() if now is None else now
        slowed = self._slow.setdefault(key, SlowWatch()).feed(now, session.progress.rate_now if session.progress else None)
        if slowed is not None:
            self.ctx.say(EventKind.ALERT, pod, "slow: " + "; ".join(slowed.evidence), session.name,
                         alert="stall_diagnosis", value=slowed.kind, threshold=None, evidence=list(slowed.evidence),
                         py_spy=None)
        if not session.stalled or session.stuck_since is None or session.pid is None:
            return
        if key in self._pending or key in self._hang_tasks:
            return
        policy = self.ctx.policies(pod, session.name).auto_resume
        minutes = policy.on_hang_minutes if policy.enabled else None
        act = (bool(minutes) and now - session.stuck_since >= (minutes or 0) * 60 and self.ctx.may_act(pod)
               and now - self._hang_checked.get(key, float("-inf")) >= HANG_RECHECK_S)
        tell = self._told.get(key) != session.stuck_since
        if not (act or tell):
            return
        self._told[key] = session.stuck_since
        if act:
            self._hang_checked[key] = now
        task = asyncio.create_task(self._diagnose(pod, session.name, session.pid, minutes if act else None, tell),
                                   name=f"gpuctl-hang-{pod}-{session.name}")
        self._hang_tasks[key] = task
        task.add_done_callback(lambda _t: self._hang_tasks.pop(key, None))

    async def _diagnose(self, pod: str, session: str, pid: int, restart_after: float | None, tell: bool) -> None:
        from sessions.health.doctor import HealthUnreadable, run_doctor

        try:
            async with self.ctx.fleet.borrow(pod) as runner:
                result = await run_doctor(runner, stall_pid=pid)
        except (SshFailure, HealthUnreadable, OSError, asyncio.TimeoutError):
            return  # unknown is not hung: looked at again after HANG_RECHECK_S
        stall = result.stall
        if stall is None:
            return
        if tell:
            self.ctx.say(EventKind.ALERT, pod, f"stalled: {stall.kind or 'no stall kind fits'}: "
                         + "; ".join(stall.evidence), session, alert="stall_diagnosis", value=stall.kind,
                         threshold=None, evidence=list(stall.evidence), py_spy=stall.py_spy, ncclras=stall.ncclras)
        if restart_after is not None and stall.kind == "hung":
            await self._restart_hung(pod, session, restart_after, stall)

    async def _restart_hung(self, pod: str, session: str, minutes: float, stall: Any) -> None:
        self.ctx.say(EventKind.ALERT, pod, f"hung: its step has not moved for {minutes:g} min; "
                     + "; ".join(stall.evidence) + "; restarting it from its newest checkpoint", session,
                     alert="hung", value=stall.kind, threshold=minutes, evidence=list(stall.evidence),
                     py_spy=stall.py_spy)
        try:
            async with self.ctx.lock(pod):
                async with self.ctx.fleet.borrow(pod) as runner:
                    await sc.kill(runner, session, pod_name=pod)
        except (SshFailure, sc.SessionError, OSError, asyncio.TimeoutError):
            return
        self.ctx.fleet.refresh(pod)
        for _ in range(100):  # until the snapshots stop showing the killed run as running
            snap = self.ctx.pod(pod)
            current = next((s for s in snap.sessions if s.name == session), None) if snap else None
            if current is None or current.state != SessionState.RUNNING:
                break
            await asyncio.sleep(0.1)
        self.consider(pod, session, f"a hang of {minutes:g} min")

    def _give_up(self, pod: str, session: str, why: str, message: str) -> None:
        restarts = self.ctx.state.restarts_of(pod, session)
        restarts.gave_up = why
        self.ctx.state.save()
        self.ctx.say(EventKind.ALERT, pod, message, session, alert=why, value=restarts.count, threshold=None)

    async def _restart_later(self, pod: str, session: str, reason: str, wait: float) -> None:
        await asyncio.sleep(wait)
        while True:
            await self.ctx.wait_online(pod)
            snap = self.ctx.pod(pod)
            current = next((s for s in snap.sessions if s.name == session), None) if snap else None
            if current is not None and current.state == SessionState.RUNNING:
                return  # someone relaunched it meanwhile
            try:
                async with self.ctx.lock(pod):
                    await self._restart(pod, session, reason)
                return
            except (SshFailure, OSError, asyncio.TimeoutError):
                # The pod dropped between "online" and the relaunch: wait for it again.
                await asyncio.sleep(5.0)

    async def _restart(self, pod_name: str, session: str, reason: str) -> None:
        ctx = self.ctx
        pod = ctx.config.pod(pod_name)
        policy = ctx.policies(pod_name, session).auto_resume
        restarts = ctx.state.restarts_of(pod_name, session)
        snap = ctx.pod(pod_name)
        old = next((s for s in snap.sessions if s.name == session), None) if snap else None
        checkpoint = None
        try:
            async with ctx.fleet.borrow(pod_name) as runner:  # the pod's live link: no new handshake
                try:
                    result = await resume_mod.resume(runner, pod, session)
                    checkpoint, command = result.checkpoint, result.command
                except resume_mod.NoCheckpointToResume:
                    # Lost before its first checkpoint: what a person would do is start
                    # it again from the beginning, with the session's own command.
                    await sc.launch(runner, pod, session)
                    command = pod.session(session).command
        except sc.AlreadyRunning:
            return
        except (resume_mod.NoResumeTemplate, sc.NoCommand) as exc:
            self._give_up(pod_name, session, "no_resume_template", f"cannot auto-resume: {exc}")
            return
        except sc.SessionError as exc:
            self._give_up(pod_name, session, "resume_error", f"auto-resume failed: {exc}")
            return
        restarts.count += 1
        restarts.resumed_step = checkpoint.step if checkpoint else None
        restarts.progressed = False
        self._first_step.pop((pod_name, session), None)
        # Known to run now, even if it dies before the agent ever lists it running:
        # its exit must still count (a run failing at once is what the brakes are for).
        ctx.state.sessions[f"{pod_name}/{session}"] = SessionState.RUNNING
        if old is not None:
            self.stale[(pod_name, session)] = (old.created, old.pid)
        ctx.state.save()
        ctx.fleet.refresh(pod_name)
        source = f"from {checkpoint.name}" if checkpoint else "from the beginning (no checkpoint yet)"
        ctx.say(EventKind.RESUMED, pod_name,
                f"restarted {source} after {reason} (attempt {restarts.count} of {policy.max_restarts})",
                session, checkpoint=checkpoint.path if checkpoint else None,
                step=checkpoint.step if checkpoint else None,
                attempt=restarts.count, max_restarts=policy.max_restarts, command=command, reason=reason)

    async def aclose(self) -> None:
        tasks = list(self._pending.values()) + list(self._hang_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
