"""A pod's state decided in one place (issue 12, item 1): the rules of
`sessions.providers.lifecycle`, pure, with the provider's answers as the RunPod, Vast
and Lambda backends build them. The same rules against the real stand-in servers, the
sshd fixture, `status --json` and the TUI are in test_lifecycle_views.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from backends.providers.base import InstanceInfo, InstanceState
from sessions.progress.tracker import Progress
from sessions.providers.lifecycle import OwnAction, decide, own_action, settle
from sessions.providers.poller import ProviderView
from sessions.snapshot import GpuSample, PodSnapshot, PodState, SessionSnapshot, SessionState

T = 1_800_000_000.0
ONLINE, OFFLINE, RECONNECTING = PodState.ONLINE, PodState.OFFLINE, PodState.RECONNECTING


def view(state: str | None, *, at: float = T, preempted: bool = False, gone: bool = False,
         raw: str = "EXITED") -> ProviderView:
    info = InstanceInfo("pod1", state, raw) if state else None
    return ProviderView(info, preempted=preempted, gone=gone, polled_at=at)


def test_the_connection_decides_while_the_provider_says_nothing_against_it():
    for connection in (PodState.CONNECTING, ONLINE, RECONNECTING, OFFLINE):
        assert decide(connection, None, None) == (connection, None)
        assert decide(connection, view(InstanceState.RUNNING, raw="RUNNING"), None) == (connection, None)
        assert decide(connection, ProviderView(error="runpod: boom", polled_at=T), None) == (connection, None)


def test_the_providers_stop_teardown_and_preemption_while_ssh_cannot_reach_it():
    assert decide(OFFLINE, view(InstanceState.STOPPED), None, "runpod") == (
        PodState.STOPPED, "stopped: runpod says the instance is stopped (EXITED)")
    assert decide(RECONNECTING, view(InstanceState.TERMINATED, raw="terminated"), None, "lambda")[0] == PodState.TERMINATED
    assert decide(OFFLINE, view(None, gone=True), None, "vastai") == (
        PodState.TERMINATED, "terminated: vastai no longer knows the instance")
    assert decide(OFFLINE, view(InstanceState.STOPPED, preempted=True), None, "runpod") == (
        PodState.PREEMPTED, "preempted: runpod took the instance back (EXITED)")


def test_a_pod_ssh_still_reaches_stays_online_whatever_the_provider_says():
    """A wrong id in the config must not hide a live machine: provider_state says it."""
    for answer in (view(InstanceState.STOPPED), view(None, gone=True), view(InstanceState.STOPPED, preempted=True)):
        assert decide(ONLINE, answer, None) == (ONLINE, None)


def test_gpuctls_own_stop_and_teardown_show_at_once_until_the_provider_says_it_runs_again():
    stop, teardown = OwnAction(PodState.STOPPED, T), OwnAction(PodState.TERMINATED, T)
    # at once, before any poll, even while the SSH link still drains
    assert decide(ONLINE, view(InstanceState.RUNNING, at=T - 30), stop) == (PodState.STOPPED, "stopped: stopped by gpuctl")
    assert decide(ONLINE, None, teardown) == (PodState.TERMINATED, "terminated: torn down by gpuctl")
    # confirmed by the next poll, or a poll that failed: still gpuctl's
    assert decide(OFFLINE, view(InstanceState.STOPPED, at=T + 5), stop)[0] == PodState.STOPPED
    assert decide(OFFLINE, view(None, gone=True, at=T + 5), teardown)[0] == PodState.TERMINATED
    assert decide(OFFLINE, ProviderView(error="boom", polled_at=T + 5), stop)[0] == PodState.STOPPED
    # torn down elsewhere after gpuctl's stop: the provider's word
    assert decide(OFFLINE, view(None, gone=True, at=T + 5), stop)[0] == PodState.TERMINATED
    # started again from the console: the action is over, the connection decides
    assert decide(ONLINE, view(InstanceState.RUNNING, at=T + 60, raw="RUNNING"), stop) == (ONLINE, None)


def test_an_action_result_becomes_an_own_action_only_when_the_provider_confirmed_it():
    def result(action, outcome, state):
        return SimpleNamespace(action=action, outcome=outcome, state=state)

    assert own_action(result("stop", "done", "stopped"), T) == OwnAction(PodState.STOPPED, T)
    assert own_action(result("stop", "already", "terminated"), T) == OwnAction(PodState.TERMINATED, T)
    assert own_action(result("teardown", "done", "terminated"), T) == OwnAction(PodState.TERMINATED, T)
    assert own_action(result("teardown", "done", None), T) == OwnAction(PodState.TERMINATED, T)  # ssh power-off
    assert own_action(result("stop", "timeout", "running"), T) is None


def test_a_pod_that_is_not_online_keeps_its_values_as_last_known_and_no_session_running():
    running = SessionSnapshot("sft", SessionState.RUNNING, configured=True, stalled=True, stuck_since=T - 900,
                              progress=Progress(step=991, total=6000, rate=6.52, eta_s=768.0))
    exited = SessionSnapshot("eval", SessionState.EXITED, exit_status=0)
    live = PodSnapshot("a100x4", "h", state=ONLINE, sampled_at=T, received_at=T, sessions=(running, exited),
                       gpus=(GpuSample(0, "NVIDIA A100", temp_c=63.0, util_pct=96.0),))
    assert not live.stale and settle(live, None, None) is live

    stopped = settle(live, view(InstanceState.STOPPED), OwnAction(PodState.STOPPED, T + 1), None)
    assert (stopped.state, stopped.error_kind, stopped.stale) == (PodState.STOPPED, "stopped", True)
    assert stopped.gpus == live.gpus and stopped.received_at == T and stopped.age_s(T + 600) == 600
    sft, evaluation = stopped.sessions
    assert (sft.state, sft.last_state, sft.stale, sft.stalled) == (SessionState.UNKNOWN, "running", True, False)
    assert sft.progress == running.progress  # the last step shown as such, not dropped
    assert (evaluation.state, evaluation.last_state) == (SessionState.UNKNOWN, "exited")
    assert settle(stopped, None, None).sessions == stopped.sessions  # settling twice changes nothing

    never_seen = PodSnapshot("b", "h", state=OFFLINE)
    assert not never_seen.stale and never_seen.age_s(T) is None  # nothing shown, nothing stale


def test_gpuctl_status_dims_a_stale_pods_samples_never_hot_and_says_how_old():
    import time

    from rich.console import Console

    from sessions.snapshot import FleetSnapshot
    from tui.status_table import problems, rich_renderable

    arrived = time.time() - 630
    pod = settle(PodSnapshot("a100x4", "h", state=OFFLINE, sampled_at=arrived, received_at=arrived,
                             gpus=(GpuSample(0, "NVIDIA A100", temp_c=91.0),), price_per_hour=2.0, spend_usd=1.5),
                 None, OwnAction(PodState.STOPPED, arrived + 60))
    fleet = FleetSnapshot((pod,))
    assert problems(fleet, now=arrived + 630) == [
        (pod, "stopped: stopped by gpuctl (values shown are last known, from 10m ago)")]
    console = Console(width=160, force_terminal=True, color_system="truecolor", record=True)
    console.print(rich_renderable(fleet))
    out = console.export_text(styles=True)
    assert "\x1b[2;3m91°C" in out and "\x1b[1;31m91°C" not in out  # dimmed, not hot: nobody sees it now
    assert "\x1b[2;3m1.50" not in out  # spend is the ledger's, live
    assert "values shown are last known, from 10m ago" in out


def test_the_fleet_row_dims_a_stale_pod_says_its_age_and_sorts_it_after_live_ones():
    from tui import fleet_rows

    def gpu_pod(name, temp, state=ONLINE):
        return PodSnapshot(name, "h", state=state, sampled_at=T, received_at=T,
                           gpus=(GpuSample(0, "NVIDIA A100", temp_c=temp, util_pct=90.0),),
                           sessions=(SessionSnapshot("sft", SessionState.RUNNING, configured=True,
                                                     progress=Progress(step=10, total=100, rate=1.0, eta_s=90.0)),))

    hot_stale = settle(gpu_pod("stopped", 91.0, OFFLINE), None, OwnAction(PodState.STOPPED, T))
    live, cool = gpu_pod("live", 70.0), gpu_pod("cool", 40.0)
    unknown = PodSnapshot("new", "h", state=PodState.CONNECTING)
    pods = [unknown, hot_stale, cool, live]
    for sort in ("temp", "util", "eta"):
        names = [p.name for p in fleet_rows.ordered(pods, sort)]
        assert names.index("stopped") > max(names.index("live"), names.index("cool")), (sort, names)
        reverse = [p.name for p in fleet_rows.ordered(pods, sort, reverse=True)]
        assert reverse.index("stopped") > max(reverse.index("live"), reverse.index("cool")), (sort, reverse)
    assert [p.name for p in fleet_rows.ordered(pods, "temp")] == ["live", "cool", "stopped", "new"]

    cells = fleet_rows.pod_cells(hot_stale, hot_c=80.0, now=T + 630)
    assert {tone for key in fleet_rows.STALE_COLUMNS for _, tone in cells[key]} == {"stale"}  # 91 °C is not "hot"
    assert cells["eta"] == (("10m ago", "stale"),) and cells["state"][0] == ("stopped", "stopped")
    assert cells["session"][0] == ("sft", "stale")
    assert fleet_rows.detail_line(hot_stale)[0].startswith("stopped: stopped: stopped by gpuctl · values shown are from")


def test_a_pod_gpuctl_stopped_that_ssh_reaches_again_gets_a_fresh_poll_not_one_per_sample():
    from sessions.providers.lifecycle import wants_poll

    stop = OwnAction(PodState.STOPPED, T)
    assert wants_poll(ONLINE, view(InstanceState.RUNNING, at=T - 60), stop, now=T + 1)  # older than the stop
    assert not wants_poll(ONLINE, view(InstanceState.STOPPED, at=T + 5), stop, now=T + 6)  # asked since, recently
    assert wants_poll(ONLINE, view(InstanceState.STOPPED, at=T + 5), stop, now=T + 30)
    assert not wants_poll(OFFLINE, None, stop, now=T + 30)  # down, as a stopped pod is
    assert not wants_poll(ONLINE, None, None, now=T + 30)  # nothing of gpuctl's to check
