"""The log pane: what it writes to a real terminal, wrapping, `\\r` bars, Home/End, its title.

Issue 16 items 3, 6 and part of 12. The terminal test runs a log pane in real tmux and
reads back both the bytes it wrote (`pipe-pane`) and what the terminal shows
(`capture-pane`): the pane asks the terminal to scroll its rows and writes only the
new ones, and the picture must still be exactly the newest lines. The rest drive the
app's own log screen with Pilot over a fixed fleet (tests/support/fake_fleet.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sessions.config.loader import parse_config
from tests.support.fake_fleet import StaticFleet, demo_snapshot
from tests.support.log_output_app import line_text
from tui.app import make_app
from tui.log_lines import fit_bar
from tui.log_rows import LogRows, wrap_ranges
from tui.screens.log_screen import LogScreen
from tui.widgets.log_pane import LogPane
from tui.widgets.log_view import LogView

ROOT = Path(__file__).resolve().parent.parent
TQDM = (" 37%|███████▍            | 1850/5000 [13:22<22:46,  2.31it/s, loss=1.234, lr=2.9e-04, "
        "grad_norm=0.8812]")

# ------------------------------------------------------------------ rows, pure


def test_a_long_line_wraps_into_rows_and_trailing_blanks_make_no_empty_row():
    assert wrap_ranges("x" * 170, 80) == [(0, 80), (80, 160), (160, 170)]
    assert wrap_ranges("short" + " " * 100, 80) == [(0, 5)]  # tqdm pads its redraws
    assert wrap_ranges("", 80) == [(0, 0)]
    assert wrap_ranges("界" * 50, 80) == [(0, 40), (40, 50)]  # two cells each


def test_a_bar_drawn_for_a_wide_terminal_gives_up_width_first():
    wide = "  2%|██▋" + " " * 150 + "| 90/6000 [00:13<14:55,  6.60it/s]"  # tqdm in a 200-column tmux
    fitted = fit_bar(wide, 78)
    assert len(fitted) == 78 and fitted.endswith("| 90/6000 [00:13<14:55,  6.60it/s]")
    assert fitted.startswith("  2%|") and fitted[5] in "▏▎▍▌▋▊▉" and fitted[6:43].strip() == ""  # 2%: a sliver
    half = fit_bar(" 50%|" + "█" * 100 + " " * 100 + "| 3000/6000", 60)
    assert half == " 50%|" + "█" * 22 + " " * 22 + "| 3000/6000"
    assert fit_bar("plain text " * 20, 40) == "plain text " * 20 and fit_bar(TQDM, 200) == TQDM


def test_rows_follow_wrap_width_and_the_tail():
    rows = LogRows(max_lines=3)
    rows.add([("a" * 100, ""), ("b", "warning")])
    assert len(rows) == 2  # no width yet: a row per line
    assert rows.layout(40, True)
    assert len(rows) == 4 and rows.row(2) == (0, "a" * 20, "", 80) and rows.row(3) == (1, "b", "warning", 0)
    rows.set_tail(TQDM, "")
    assert len(rows) == 4 + 3 and rows.complete_rows == 4  # the bar narrowed, the counts still wrap
    assert "".join(rows.row(i)[1] for i in range(4, len(rows))) == fit_bar(TQDM, 40)
    dropped = rows.add([("c", ""), ("d", "")])  # max 3 lines: "a..." falls off
    assert dropped == 3 and rows.first == 1 and rows.row(0)[1] == "b" and rows.first_row_of(3) == 2
    rows.layout(40, False)
    assert len(rows) == 3 + 1 and rows.row(3)[1] == TQDM


# ------------------------------------------------------------------ the app's log screen


def app_for(tmp_path, log: str):
    pods = [{"name": p.name, "host": "10.0.0.1"} for p in demo_snapshot().pods]
    pods[0]["sessions"] = [{"name": "train", "command": "python train.py", "log": "train.log"}]
    config = parse_config(yaml.safe_dump({"pods": pods}, sort_keys=False), tmp_path / "config.yaml")
    fleet = StaticFleet(demo_snapshot(), logs={("a100-west", "train"): log})
    return make_app(config, fleet_factory=lambda _config: fleet, state_file=tmp_path / "tui.json", ui_interval=0), fleet


async def open_log(app, pilot) -> LogView:
    for _ in range(100):
        await pilot.pause()
        if app.fleet is not None and app.snapshot.pods:
            break
    app.push_screen(LogScreen("a100-west", "train"))
    for _ in range(50):
        await pilot.pause()
        if isinstance(app.screen, LogScreen) and app.screen.query(LogView):
            break
    view = app.screen.query_one(LogView)
    await pilot.pause()
    return view


def screen_text(app) -> list[str]:
    return ["".join(seg.text for seg in strip).rstrip() for strip in app.screen._compositor.render_strips()]


async def test_a_tqdm_bar_redrawn_with_cr_shows_its_last_state_whole_at_80_columns(tmp_path):
    bar = "".join(f"\r{TQDM.replace('1850', str(1850 + i))}" for i in range(5))  # redraws, no newline yet
    app, _ = app_for(tmp_path, "step 1\n" + bar)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_log(app, pilot)
        text = "\n".join(screen_text(app))
        assert "1854/5000" in text and "grad_norm=\n0.8812]" in text  # the end of the bar, wrapped, not cropped
        assert "1853/5000" not in text  # only the last redraw
        await pilot.press("z")  # no wrap: cropped at the width, scrolled sideways with right
        await pilot.pause()
        assert "grad_norm" not in "\n".join(screen_text(app)) and "no wrap" in app.screen.query_one(LogPane).border_title
        await pilot.press("right", "right")
        await pilot.pause()
        assert "grad_norm=0.8812]" in "\n".join(screen_text(app))


async def test_home_end_and_the_paused_title(tmp_path):
    app, fleet = app_for(tmp_path, "".join(f"step {i}\n" for i in range(1, 201)))
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_log(app, pilot)
        pane = app.screen.query_one(LogPane)
        assert view.follow and view.scroll_y == view.max_scroll_y
        await pilot.press("home")
        await pilot.pause()
        assert not view.follow and view.scroll_y == 0 and "step 1" in screen_text(app)[1]
        assert "paused at line 1/200 (End: follow)" in pane.border_title
        for listener in fleet.listeners[("a100-west", "train")]:
            listener({"data": "step 201\n"})
        await pilot.pause()
        assert "paused at line 1/201 (1 new line, End: follow)" in pane.border_title
        await pilot.press("end")
        await pilot.pause()
        assert view.follow and view.scroll_y == view.max_scroll_y and "step 201" in "\n".join(screen_text(app))
        assert pane.border_title.endswith("following")


async def test_the_pod_screen_log_has_no_stray_scrollbar_glyph_and_end_follows_again(tmp_path):
    from tui.screens.pod_screen import PodScreen

    app, _ = app_for(tmp_path, "".join(f"step {i} | loss 1.0\n" for i in range(1, 2001)))
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause()
            if app.fleet is not None and app.snapshot.pods:
                break
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause()
            if isinstance(app.screen, PodScreen) and app.screen.query_one(LogView).line_count:
                break
        view = app.screen.query_one(LogView)
        top = view.region.y
        rows = screen_text(app)[top:top + view.region.height]
        assert rows and all(row[-1:] not in "▁▂▃▄▅▆▇█▔" for row in rows if row.startswith(" step"))
        await pilot.press("f")  # pause
        await pilot.pause()
        assert not view.follow
        await pilot.press("end")
        await pilot.pause()
        assert view.follow and view.scroll_y == view.max_scroll_y


# ------------------------------------------------------------------ a real terminal

LINES = 120


def test_following_writes_only_new_rows_and_the_terminal_shows_exactly_the_newest_lines(tmp_path):
    socket = f"gpuctl-logout-{os.getpid()}"
    done, piped = tmp_path / "done", tmp_path / "piped.bin"
    command = f"cd {ROOT} && exec {sys.executable} -m tests.support.log_output_app {LINES} {done}"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                              env=env).stdout

    try:
        tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24", command)
        deadline = time.monotonic() + 60
        while "line 0030" not in tmux("capture-pane", "-p", "-t", "t"):  # the view is full: measure from here
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", "t")
            time.sleep(0.05)
        tmux("pipe-pane", "-t", "t", f"cat > {piped}")
        while not done.exists():
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", "t")
            time.sleep(0.1)
        tmux("pipe-pane", "-t", "t")
        shown = tmux("capture-pane", "-p", "-t", "t").splitlines()
    finally:
        tmux("kill-server")

    rows: list[str] = []
    for n in range(1, LINES + 1):
        text = line_text(n)
        rows += [text[i:i + 80].rstrip() for i in range(0, len(text), 80)]
    # Each line costs its own row(s) and a scroll, not a repaint of the 23 rows (~2 KB a frame).
    written = piped.stat().st_size
    lines_measured = LINES - 30
    assert written < lines_measured * 400, f"{written} bytes for {lines_measured} lines"
    assert [row.rstrip() for row in shown[1:24]] == rows[-23:]  # the title, then the newest rows, toast gone
