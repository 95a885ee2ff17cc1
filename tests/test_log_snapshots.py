"""The full-screen log at 80x24 with a long tqdm line, as an SVG snapshot (issue 16 item 6).

A Hugging Face run in a 200-column tmux draws its bar that wide; redrawn with `\\r`
it reaches the pane as one long line. Wrapped at 80 columns the bar is drawn narrower
and its counts, rate and ETA are whole on screen, the older redraws gone; a long
`{'loss': ...}` dict wraps onto a second row. Update with `--snapshot-update` after a
deliberate change, and look at the SVG first.
"""

from __future__ import annotations

from tests.test_log_pane_output import app_for
from tui.screens.log_screen import LogScreen

BAR = "  2%|██▋" + " " * 150 + "| {step}/6000 [00:13<14:55,  6.60it/s]"
LOG = ("".join(f"{{'loss': '{2.3 - i / 100:.3f}', 'grad_norm': '2.088', 'learning_rate': '{i + 1}.1e-06', "
               f"'epoch': '0.0{i}'}}\n" for i in range(1, 9))
       + "".join("\r" + BAR.format(step=88 + i) for i in range(4)))


def test_log_screen_with_a_long_tqdm_line_at_80x24(snap_compare, tmp_path):
    app, _ = app_for(tmp_path, LOG)

    async def open_log(pilot) -> None:
        for _ in range(100):
            await pilot.pause()
            if pilot.app.fleet is not None and pilot.app.snapshot.pods:
                break
        pilot.app.push_screen(LogScreen("a100-west", "train"))
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_log)
