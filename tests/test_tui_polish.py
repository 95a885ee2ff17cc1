"""Polish a QA pass found on the demo: keys that cannot apply are not offered, a greyed
key says why once, the history wraps paths at their separators, checkpoint ages count.

The app runs on the fixed fleet of the snapshot tests (tests/support/fake_fleet.py);
what is tested is what the screens say, not how pods are reached (test_tui_pilot.py).
"""

from __future__ import annotations

import io

import pytest
import yaml
from rich.console import Console

from sessions.config.loader import parse_config
from tests.support.fake_fleet import StaticFleet, demo_snapshot
from tui.app import make_app


def app_for(tmp_path, sessions=None, **top):
    pods = [{"name": p.name, "host": "192.0.2.1", **({"sessions": sessions[p.name]} if p.name in (sessions or {}) else {})}
            for p in demo_snapshot().pods]
    config = parse_config(yaml.safe_dump({"pods": pods, **top}, sort_keys=False), tmp_path / "config.yaml")
    fleet = StaticFleet(demo_snapshot())
    return make_app(config, fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json", ui_interval=0)


async def started(app, pilot) -> None:
    for _ in range(100):
        await pilot.pause()
        if app.fleet is not None and app.snapshot.pods and app.snapshot.pods[0].state == "online":
            return
    raise AssertionError("the fleet never showed")


def rendered(renderable) -> str:
    console = Console(width=140, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


async def help_text(app, pilot) -> str:
    await pilot.press("question_mark")
    await pilot.pause()
    text = rendered(app.screen.query_one(".help-body").content)
    await pilot.press("escape")
    await pilot.pause()
    return text


async def test_help_lists_the_job_keys_only_where_the_config_has_jobs(tmp_path):
    names = [p.name for p in demo_snapshot().pods]
    for jobs in ([], [{"name": "pair", "pods": names[:2]}]):
        app = app_for(tmp_path, **({"jobs": jobs} if jobs else {}))
        async with app.run_test(size=(140, 60)) as pilot:
            await started(app, pilot)
            text = await help_text(app, pilot)
            assert ("Open the job of the highlighted pod" in text) is bool(jobs), text
            assert ("Job screen" in text) is bool(jobs)
            assert "Filter pods by name" in text  # the rest is still there


async def test_a_greyed_key_says_why_once_in_one_line(tmp_path):
    from tui.actions import NOTHING_TO_LAUNCH

    app = app_for(tmp_path)  # no pod has a configured `command:`: `n` is greyed everywhere
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await started(app, pilot)
        pod = app.snapshot.pods[0].name
        assert app.screen.check_action("launch", ()) is None  # greyed on the key line
        await pilot.press("n", "n")
        await pilot.pause()
        assert [(n.title, n.message, n.severity) for n in app.notices] == [(pod, NOTHING_TO_LAUNCH, "information")]
        from textual.widgets._toast import Toast

        [toast] = app.screen.query(Toast)
        assert toast.region.height == 1 and "…" not in str(toast.render())  # whole, not cut


DOWNLOADED = ("Downloaded checkpoint-400 (4.2G, sha256 verified) to "
              "/tmp/gpuctl-demo-m2uzahog/downloads/a100x4/sft/lightning_logs/version_0/checkpoints/checkpoint-400")
NAMES = set(DOWNLOADED.replace("/", " ").split())


@pytest.mark.parametrize("width", [30, 40, 57, 60, 90, 200])
def test_the_history_folds_a_path_at_its_separators_never_inside_a_name(width):
    from tui.screens.notifications_screen import fold

    lines = fold(DOWNLOADED, width)
    assert "".join(line if line.endswith("/") else line + " " for line in lines).strip() == DOWNLOADED
    for line in lines:
        assert len(line) <= width
        assert set(line.replace("/", " ").split()) <= NAMES, line  # whole names only
    assert fold("a" * 50, 20) == ["a" * 20, "a" * 20, "a" * 10]  # one name past the width: cut, nothing else can


async def test_m_wraps_a_long_path_at_its_separators(tmp_path):
    from textual.widgets import RichLog

    app = app_for(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        app.notify(DOWNLOADED, title="a100-west / sft", routine=True)
        await pilot.press("m")
        await pilot.pause(0.3)
        text = [strip.text.rstrip() for strip in app.screen.query_one(RichLog).lines]
        from tui.screens.notifications_screen import WHERE_WIDTH

        indent = len(app.notices.newest_first()[0].clock) + 1 + 8 + WHERE_WIDTH + 1  # time, severity, pod
        message = [line[indent:] for line in text]
        assert len(message) > 1 and "".join(m if m.endswith("/") else m + " " for m in message).strip() == DOWNLOADED
        for line in message:
            assert set(line.replace("/", " ").split()) <= NAMES, line


def test_an_age_tick_repaints_only_the_cells_that_changed():
    from tui.widgets.checkpoint_list import changed_cells

    before = ("checkpoint-1000   step 1000    4.2G   16m40s ago  not downloaded", "")
    after = ("checkpoint-1000   step 1000    4.2G   16m41s ago  not downloaded", "")
    assert changed_cells(before, after, 3, 80) == (before[0].index("40s") + 1, 3, 1, 1)  # the one digit
    longer = ("checkpoint-1000   step 1000    4.2G  1h00m00s ago  not downloaded", "")
    region = changed_cells(after, longer, 0, 80)
    assert region.x == after[0].index(" 16m") and region.right == len(longer[0])
    assert changed_cells(after, (after[0], "ok"), 2, 80) == (0, 2, 80, 1)  # a new tone: the whole line


async def test_checkpoint_ages_count_on_between_listings(tmp_path, monkeypatch):
    from sessions.checkpoints.listing import Checkpoint
    from tui.screens.pod_screen import PodScreen
    from tui.widgets.checkpoint_list import CheckpointList

    now = [100.0]
    monkeypatch.setattr(PodScreen, "clock", staticmethod(lambda: now[0]))
    listed = []

    async def listing(target):
        listed.append(target)
        return [Checkpoint("checkpoint-1000", "/workspace/checkpoint-1000", "dir", 1000, 2**30, 9992.0,
                           files=3, listed_at=10000.0)]

    first = demo_snapshot().pods[0]
    app = app_for(tmp_path, sessions={first.name: [{"name": s.name, "command": "python train.py"}
                                                   for s in first.sessions]})
    app.actions.list_checkpoints = listing
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, pilot)
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause()
            if "ago" in str(app.screen.query_one(CheckpointList).render()):
                break
        pane = app.screen.query_one(CheckpointList)
        assert "8s ago" in str(pane.render())
        painted = []
        monkeypatch.setattr(pane, "refresh", lambda *regions, **kw: painted.extend(regions or ["all"]))
        now[0] += 12  # twelve seconds later, no new listing
        app.screen._tick_ages()
        assert "20s ago" in str(pane.render()) and len(listed) == 1
        assert len(painted) == 1 and painted[0] != "all" and painted[0].width <= 3  # "8s" -> "20s"


def test_a_transfer_rate_is_said_in_the_units_of_its_sizes():
    from tui import humanize
    from tui.downloads import DownloadState

    assert humanize.size(300e6) == "286M" and humanize.rate(300e6) == "286M/s"
    assert humanize.rate(512) == "512B/s" and humanize.rate(None) == "-"
    state = DownloadState("p", "s", done=300_000_000, total=600_000_000, started=0.0)
    assert state.progress_text(now=1.0) == "286M/572M 50% 286M/s"


def test_the_transfer_bar_says_amount_and_speed_as_the_summary_does():
    from rich.progress import Progress

    from tui.transfer_progress import amount_columns

    clock = [0.0]
    amount, speed = amount_columns()
    bar = Progress(amount, speed, console=Console(file=io.StringIO()), get_time=lambda: clock[0])
    task = bar.add_task("p <- data", total=600_000_000)
    for second in (1, 2, 3):
        clock[0] = float(second)
        bar.update(task, completed=100_000_000 * second)
    state = bar.tasks[0]
    assert str(amount.render(state)) == "286M/572M"  # rich's own column said "300.0/600.0 MB"
    assert str(speed.render(state)) == "95M/s"  # 100e6 bytes a second
