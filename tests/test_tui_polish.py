"""Polish a QA pass found on the demo: keys that cannot apply are not offered, a greyed
key says why once, the history wraps paths at their separators, checkpoint ages count.

The app runs on the fixed fleet of the snapshot tests (tests/support/fake_fleet.py);
what is tested is what the screens say, not how pods are reached (test_tui_pilot.py).
"""

from __future__ import annotations

import io

import yaml
from rich.console import Console

from sessions.config.loader import parse_config
from tests.support.fake_fleet import StaticFleet, demo_snapshot
from tui.app import make_app


def app_for(tmp_path, **top):
    pods = [{"name": p.name, "host": "192.0.2.1"} for p in demo_snapshot().pods]
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
