"""One threshold per idea (issue 12, item 4): the temperature cell colour, the toast and
the alert read the same `alerts:` policy value, and "stalled" has one definition with
one key (`policies.alerts.stall_minutes`; the old `sessions[].stall_minutes` still
works and `config check` warns about it)."""

from __future__ import annotations

import asyncio
import io
import os
import shlex
import subprocess
from pathlib import Path

import yaml
from rich.console import Console

from sessions.watch.alerts import AlertTracker
from sessions.config.loader import deprecations, parse_config
from sessions.events import EventKind
from sessions.fleet.facade import Fleet
from sessions.config.policy_model import policies_for
from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot
from tests.support.pinning import trust
from tui import fleet_rows
from tui.event_toasts import toast_for
from tui.cli import main
from tui.status_table import hot_at, pod_alerts, rich_renderable

HOT_80 = "policies: {alerts: {gpu_temp_c: 80}}\npods:\n  - {name: a, host: h}\n"


def pod(temp: float, name: str = "a") -> PodSnapshot:
    gpu = GpuSample(index=0, name="NVIDIA A100-SXM4-80GB", temp_c=temp, util_pct=90.0)
    return PodSnapshot(name=name, host="h", state="online", gpus=(gpu,), gpu_status="ok")


def test_an_80c_alert_threshold_colours_an_82c_cell_hot_in_gpuctl_status(tmp_path):
    config = parse_config(HOT_80, tmp_path / "c.yaml")
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard", width=200).print(
        rich_renderable(FleetSnapshot(pods=(pod(82.0),)), config))
    assert "\x1b[1;31m82°C" in out.getvalue()  # bold red: hot
    # Without the config the default (85 °C) holds: 82 °C is only warm (yellow).
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard", width=200).print(
        rich_renderable(FleetSnapshot(pods=(pod(82.0),))))
    assert "\x1b[33m82°C" in out.getvalue()


def test_an_80c_alert_threshold_colours_the_fleet_row_hot_and_raises_toast_and_alert(tmp_path):
    config = parse_config(HOT_80, tmp_path / "c.yaml")
    alerts = pod_alerts(config, "a")
    cells = fleet_rows.pod_cells(pod(82.0), hot_c=hot_at(alerts))
    assert [tone for _, tone in cells["gpus"]][1] == "hot"
    # 10 °C under the threshold is warm: 72 °C is, 69 °C is not.
    assert [t for _, t in fleet_rows.pod_cells(pod(72.0), hot_c=hot_at(alerts))["gpus"]][1] == "warm"
    assert [t for _, t in fleet_rows.pod_cells(pod(69.0), hot_c=hot_at(alerts))["gpus"]][1] == ""
    # The toast and the alert fire at the same 82 °C, from the same policy value: the
    # toast is the alert event's (tui.event_toasts), one event for both.
    raised = AlertTracker().update(pod(82.0), alerts, lambda _: alerts, 0.0)
    assert [(e.kind, e.extra["alert"]) for e in raised] == [(EventKind.ALERT, "gpu_temp_c")]
    toast = toast_for(raised[0])
    assert toast is not None and "82" in toast.message and toast.severity == "warning"


OLD_KEY = "pods:\n  - name: a\n    host: h\n    sessions:\n      - {name: t, stall_minutes: 5}\n"
NEW_KEY = "pods:\n  - name: a\n    host: h\n    sessions:\n      - {name: t, policies: {alerts: {stall_minutes: 5}}}\n"


def stuck(minutes: float, config) -> list:
    """The stall events of a run whose step stays at 100 for `minutes`: the log's tracker
    keeps the one "stuck since" clock (as the session book asks it), the alert reads it."""
    from sessions.progress.tracker import ProgressTracker

    alerts = policies_for(config, config.pod("a"), "t").alerts
    log = ProgressTracker()
    log.feed("step 100/1000 | loss 2.0\n", 0.0)
    tracker = AlertTracker()
    events = []
    for minute in (0.0, minutes):
        since = log.stuck_since(minute * 60.0, 60.0 * alerts.stall_minutes)
        snap = SessionSnapshot("t", state="running", configured=True, stalled=since is not None, stuck_since=since,
                               progress=Progress(format="torchrun", step=100, total=1000))
        events += tracker.update(PodSnapshot(name="a", host="h", state="online", sessions=(snap,)),
                                 alerts, lambda _: alerts, minute * 60.0)
    return [e.extra["alert"] for e in events]


def test_the_old_stall_key_is_the_policy_value_and_config_check_warns(tmp_path, capsys):
    old = parse_config(OLD_KEY, tmp_path / "old.yaml")
    new = parse_config(NEW_KEY, tmp_path / "new.yaml")
    assert policies_for(old, old.pod("a"), "t").alerts.stall_minutes == 5
    assert stuck(4.9, old) == stuck(4.9, new) == []
    assert stuck(5.0, old) == stuck(5.0, new) == ["stall_minutes"]
    (tmp_path / "old.yaml").write_text(OLD_KEY)
    assert main(["--config", str(tmp_path / "old.yaml"), "config", "check"]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'old.yaml'}:5: sessions[].stall_minutes" in err
    assert "policies.alerts.stall_minutes" in err and "Traceback" not in err
    assert deprecations(new) == []


async def session_where(fleet: Fleet, predicate, timeout: float = 20.0) -> SessionSnapshot:
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for snap in sub:
                for s in snap.pod("p").sessions:
                    if s.name == "train" and predicate(s):
                        return s
    finally:
        sub.close()
    raise AssertionError("unreachable")


async def test_the_stalled_flag_follows_the_policys_stall_minutes(sshd, tmp_path):
    """Before, the flag read only `sessions[].stall_minutes` (else 15 min), so a policy of
    0.02 min (1.2 s) never marked the session stalled while the alert said it was."""
    trust(sshd)
    log = tmp_path / "train.log"
    log.write_text("step 1/100 | loss 2.0\n")
    entry = sshd.pod_entry("p")
    entry["sessions"] = [{"name": "train", "workdir": str(tmp_path), "log": "train.log"}]
    config = parse_config(yaml.safe_dump({"policies": {"alerts": {"stall_minutes": 0.02}}, "pods": [entry]}),
                          tmp_path / "c.yaml")

    def tmux(*args: str) -> None:
        subprocess.run(sshd.ssh_argv(" ".join(shlex.quote(a) for a in ("tmux", *args))), check=True,
                       env={**os.environ, **sshd.session_env})

    tmux("new-session", "-d", "-s", "train", "sleep 120")
    try:
        async with Fleet(config) as fleet:
            await session_where(fleet, lambda s: s.state == "running" and s.progress)
            with log.open("a") as fh:
                fh.write("step 2/100 | loss 1.9\n")
            await session_where(fleet, lambda s: s.progress.step == 2)
            stalled = await session_where(fleet, lambda s: s.stalled)
            assert stalled.progress.step == 2
    finally:
        tmux("kill-session", "-t", "=train")


def test_no_config_keeps_the_defaults(tmp_path: Path):
    assert hot_at(pod_alerts(None, "a")) == 85.0


def test_the_disk_cell_is_red_at_the_disk_alert_threshold(tmp_path):
    from sessions.snapshot import DiskUsage

    config = parse_config("policies: {alerts: {disk_used_pct: 70}}\npods:\n  - {name: a, host: h}\n",
                          tmp_path / "c.yaml")
    full = PodSnapshot(name="a", host="h", state="online", gpu_status="ok",
                       gpus=pod(50.0).gpus, disk=DiskUsage("/workspace", 72 * 2**30, 100 * 2**30))
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard", width=200).print(
        rich_renderable(FleetSnapshot(pods=(full,)), config))
    assert "\x1b[1;31m72G/100G" in out.getvalue()
