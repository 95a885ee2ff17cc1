"""The budget: once a pod has cost `max_usd`, stop or tear it down, checkpoints first.

Spend is the Fleet's `spend_usd` (price per hour x how long the instance has run).
When it reaches `budget.max_usd`:

* `action: alert` only says so (`budget_action` with action `alert`);
* `stop` / `teardown` first download and verify the newest checkpoint of every
  configured session of the pod, retrying until `grace_minutes` have passed; then
  they call the provider (`Fleet.stop_instance` / `Fleet.teardown_instance`). A
  teardown (or a stop that wipes a disk, RunPod's) after a verified download passes
  the teardown guard on its own; after the grace period it is forced, and the event
  says the checkpoints were not saved.

The action is taken once per pod and remembered in the state file; a provider call
that fails is retried every few minutes, with an alert saying why.
"""

from __future__ import annotations

import asyncio

from backends.ssh import SshFailure
from sessions.checkpoints.download import DownloadError
from sessions.events import EventKind
from sessions.watch.context import WatchContext
from sessions.watch.downloads import AutoDownload

RETRY_S = 10.0
PROVIDER_RETRY_S = 180.0


class BudgetGuard:
    """Watches spend per pod and carries out the budget action once."""

    def __init__(self, ctx: WatchContext, downloads: AutoDownload):
        self.ctx = ctx
        self.downloads = downloads
        self._tasks: dict[str, asyncio.Task] = {}

    def check(self, pod: str, spend_usd: float | None) -> None:
        """Called with each new snapshot's spend."""
        budget = self.ctx.policies(pod).budget
        if (budget.max_usd is None or spend_usd is None or spend_usd < budget.max_usd
                or pod in self.ctx.state.budget_done or pod in self._tasks or not self.ctx.may_act(pod)):
            return
        self._tasks[pod] = asyncio.create_task(self._enforce(pod, spend_usd), name=f"gpuctl-budget-{pod}")

    async def _enforce(self, pod: str, spend: float) -> None:
        ctx = self.ctx
        budget = ctx.policies(pod).budget
        head = f"spent ${spend:.2f} of the ${budget.max_usd:.2f} budget"
        if budget.action == "alert":
            self._done(pod, "alert", spend, budget.max_usd, f"{head}; action: alert only, nothing stopped",
                       result="alerted")
            return
        saved, notes = await self._save_checkpoints(pod, budget.grace_minutes * 60.0)
        while True:
            try:
                async with ctx.lock(pod):
                    if budget.action == "stop":
                        result = await ctx.fleet.stop_instance(pod, force=not saved)
                    else:
                        result = await ctx.fleet.teardown_instance(pod, force=not saved)
                break
            except Exception as exc:  # provider errors are many types; each is reported
                ctx.say(EventKind.ALERT, pod, f"budget {budget.action} failed: {exc}; retrying in "
                        f"{PROVIDER_RETRY_S / 60:.0f} min", alert="budget_action_failed", value=spend,
                        threshold=budget.max_usd)
                await asyncio.sleep(PROVIDER_RETRY_S)
        what = "newest checkpoints downloaded and verified" if saved else \
            f"checkpoints NOT all saved after {budget.grace_minutes:g} min ({'; '.join(notes)})"
        self._done(pod, budget.action, spend, budget.max_usd, f"{head}; {what}; {result.message}",
                   result=result.outcome, checkpoints_verified=saved)

    async def _save_checkpoints(self, pod: str, grace_s: float) -> tuple[bool, list[str]]:
        """Download every configured session's newest checkpoint, retrying until the
        grace period ends. Returns (all saved, what went wrong)."""
        pod_cfg = self.ctx.config.pod(pod)
        if pod_cfg.is_local:
            return True, []  # the checkpoints are on this machine already
        deadline = asyncio.get_running_loop().time() + grace_s
        pending = [s.name for s in pod_cfg.sessions]
        notes: dict[str, str] = {}
        while pending:
            for session in list(pending):
                try:
                    await self.downloads.download_newest(pod, session)
                    pending.remove(session)
                    notes.pop(session, None)
                except (SshFailure, DownloadError, OSError) as exc:
                    notes[session] = f"{session}: {exc}"
            left = deadline - asyncio.get_running_loop().time()
            if not pending or left <= 0:
                break
            await asyncio.sleep(min(RETRY_S, left))
        return not pending, list(notes.values())

    def _done(self, pod: str, action: str, spend: float, max_usd: float | None, message: str, **extra) -> None:
        self.ctx.state.budget_done[pod] = {"action": action, "ts": self.ctx.clock(), "spend_usd": spend}
        self.ctx.state.save()
        self.ctx.say(EventKind.BUDGET_ACTION, pod, message, action=action, spend_usd=round(spend, 2),
                     max_usd=max_usd, **extra)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
