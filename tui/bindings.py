"""Every key binding of the app, each with an id that config can remap.

`keys: {pod.teardown: ctrl+t}` in config becomes `App.set_keymap`; the ids are the
contract with users' configs, so they never change meaning. The help screen and the
command palette list these same tables, so what they show is what the keys do.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from textual.binding import Binding

HELP = Binding("question_mark", "app.help", "Help", id="app.help", tooltip="Show every key")
"""On every screen's own list too, so the footer shows it first."""

APP: list[Binding] = [
    HELP,
    Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit gpuctl (sessions keep running on the pods)"),
    Binding("m", "notifications", "Notices", id="app.notifications", show=False,
            tooltip="Every notification so far, in full, with time, severity and pod"),
    Binding("ctrl+p", "command_palette", "Palette", id="app.palette", show=False, priority=True,
            tooltip="Command palette: every action and theme by name"),
]

FLEET: list[Binding] = [
    HELP,
    Binding("enter", "open_pod", "Open", id="fleet.open", tooltip="Open the highlighted pod"),
    Binding("slash", "filter", "Filter", id="fleet.filter", priority=True,  # see FleetScreen.compose
            tooltip="Filter pods by name, host, state, GPU model or session (Esc clears)"),
    Binding("o", "sort", "Sort", id="fleet.sort",
            tooltip="Sort by the next key: config order, name, state, hottest GPU, utilization, ETA, $/h"),
    Binding("O", "reverse_sort", "Reverse", id="fleet.reverse", show=False, tooltip="Reverse the sort"),
    # Shown only on a job's row or its node's (FleetScreen.check_action hides them elsewhere)
    Binding("J", "open_job", "Job", id="fleet.open_job",
            tooltip="Open the job of the highlighted pod: its ranks, their GPUs side by side, stragglers"),
    Binding("space", "toggle_job", "Nodes", id="fleet.toggle_job",
            tooltip="Show or fold the nodes of the highlighted job under its row"),
]

JOB: list[Binding] = [
    HELP,
    Binding("escape", "back", "Back", id="job.back", tooltip="Back to the fleet"),
]

POD_ACTIONS: list[Binding] = [
    Binding("a", "attach", "Attach", id="pod.attach",
            tooltip="Attach this terminal to the session: ssh -t ... tmux attach (detach: C-b d)"),
    Binding("n", "launch", "Launch", id="pod.launch", tooltip="Launch a configured session that is not running"),
    Binding("k", "kill", "Kill", id="pod.kill", tooltip="Kill the session's tmux session (asks first)"),
    Binding("d", "download", "Download", id="pod.download", tooltip="Download the newest checkpoint"),
    Binding("r", "resume", "Resume", id="pod.resume", tooltip="Relaunch the session from its newest checkpoint"),
    Binding("s", "stop", "Stop", id="pod.stop", tooltip="Stop the instance through its provider (asks first)"),
    Binding("T", "teardown", "Teardown", id="pod.teardown",
            tooltip="Terminate the instance through its provider (type the pod name to confirm)"),
    Binding("l", "log", "Log", id="pod.log", tooltip="The session's log, full screen"),
    Binding("w", "automation", "Auto", id="pod.automation",
            tooltip="Pause or resume this pod's policies: auto-download, auto-resume, budget (alerts stay on)"),
]
"""On the fleet screen they act on the highlighted pod's main session; on the pod
screen, on the selected session."""

LOG_VIEW: list[Binding] = [
    Binding("z", "wrap", "Wrap", id="log.wrap",
            tooltip="Wrap long log lines at the pane's width, or crop them and scroll sideways (left/right)"),
    Binding("home", "log_top", "Top", id="log.top", show=False, tooltip="The log's oldest kept line (pauses following)"),
    Binding("end", "log_end", "End", id="log.end", show=False, tooltip="The log's newest line, and follow it"),
    Binding("left", "log_side(-1)", "Scroll left", id="log.left", show=False,
            tooltip="Scroll a cropped (no wrap) log left"),
    Binding("right", "log_side(1)", "Scroll right", id="log.right", show=False,
            tooltip="Scroll a cropped (no wrap) log right"),
]
"""Log keys of the pod screen and the full-screen log (`w` is taken: pod automation)."""

POD: list[Binding] = [
    Binding("escape", "back", "Back", id="pod.back", tooltip="Back to the fleet"),
    Binding("slash", "search", "Search", id="log.search",
            tooltip="Search the log, matches highlighted (Enter: older match, Esc: close)"),
    Binding("f", "follow", "Follow", id="log.follow", tooltip="Follow the newest line, or pause"),
    Binding("pageup", "log_page(-1)", "Page up", id="log.page_up", show=False, tooltip="Scroll the log up a page"),
    Binding("pagedown", "log_page(1)", "Page down", id="log.page_down", show=False,
            tooltip="Scroll the log down a page"),
    *LOG_VIEW,
]

POD_SCREEN: list[Binding] = POD + [
    Binding("up", "select_session(-1)", "Previous session", id="pod.previous_session", show=False,
            tooltip="Select the previous session (the log and the actions follow it)"),
    Binding("down", "select_session(1)", "Next session", id="pod.next_session", show=False,
            tooltip="Select the next session"),
]

LOG: list[Binding] = [
    HELP,
    Binding("escape", "back", "Back", id="log.back", tooltip="Back to the previous screen"),
    Binding("slash", "search", "Search", id="log.search",
            tooltip="Search the log, matches highlighted (Enter: older match, Esc: close)"),
    Binding("f", "follow", "Follow", id="log.follow", tooltip="Follow the newest line, or pause"),
    Binding("n", "next_match", "Next match", id="log.next_match", show=False, tooltip="Next (newer) match"),
    Binding("N", "previous_match", "Previous match", id="log.previous_match", show=False,
            tooltip="Previous (older) match"),
    *LOG_VIEW,
]

DIALOG: list[Binding] = [
    Binding("y", "confirm", "Confirm", id="dialog.confirm", tooltip="Confirm (not in a dialog that asks to type a name)"),
    Binding("n,escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Cancel: nothing is changed"),
]

GROUPS: tuple[tuple[str, list[Binding]], ...] = (
    ("Everywhere", APP),
    ("Fleet screen", FLEET[1:]),
    ("Pod actions (fleet screen: the highlighted pod; pod screen: the selected session)", POD_ACTIONS),
    ("Pod screen", POD_SCREEN),
    ("Job screen", JOB[1:]),
    ("Full-screen log", LOG[1:]),
    ("Confirmation dialogs", DIALOG),
)

FOOTER_PRIORITY: tuple[str, ...] = (
    "app.help", "app.quit", "fleet.open", "pod.back", "log.back", "fleet.filter", "log.search", "pod.log",
    "pod.attach", "pod.launch", "pod.kill", "pod.download", "pod.resume", "pod.stop", "pod.teardown",
    "log.follow", "fleet.sort", "pod.automation", "log.wrap",
)
"""Which keys the footer keeps when it cannot show them all (a narrow terminal): help
and quit always, then the way in and out, then the actions. Shown keys keep their
binding order; `?` lists everything."""

MUTATING: frozenset[str] = frozenset({"attach", "launch", "kill", "resume", "stop", "teardown", "automation"})
"""Actions that change a pod: hidden and refused in read-only mode. Attach counts:
a terminal inside a training session can stop it with one Ctrl-C; so does turning on
the policies, which restart sessions and stop instances (read-only keeps them paused)."""


JOB_KEYS: frozenset[str] = frozenset({"fleet.open_job", "fleet.toggle_job", "job.back"})
"""Binding ids that only mean something where the config has `jobs:`."""


def applies(binding: Binding, config: object | None) -> bool:
    """Whether `binding` can do anything under `config`: the job keys only where it has
    jobs. The fleet screen's `check_action` (which hides `J`) and the help screen ask
    here, so `?` never lists a key the screen would hide."""
    if binding.id in JOB_KEYS:
        return bool(getattr(config, "jobs", None))
    return True


def binding_ids() -> set[str]:
    return {b.id for _, group in GROUPS for b in group if b.id}


def keymap_from_config(keys: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Config `keys:` as a Textual keymap, and a message for each id that is unknown."""
    known = binding_ids()
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, key in keys.items():
        if binding_id in known:
            keymap[binding_id] = key
            continue
        close = difflib.get_close_matches(binding_id, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; ids: {', '.join(sorted(known))}"
        problems.append(f"keys: no key binding with id {binding_id!r}{hint}")
    return keymap, problems
