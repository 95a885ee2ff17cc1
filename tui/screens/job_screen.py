"""A job's screen: the job line, one line per rank, every node's GPUs side by side, and
the ranks' logs merged (`tui/job_log.py`).

What a multi-node run needs at a glance: which rank is slow or stuck (named, with its
pod), and the GPUs of every node next to each other, so an idle or hot node stands out.
The figures are `sessions.jobs.summary`'s, as on the fleet screen and in `gpuctl jobs`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import Static

from sessions.config.model import JobConfig
from sessions.jobs.summary import RankView, summarize
from sessions.snapshot import FleetSnapshot
from themes.palettes import POD_STYLESHEET
from tui import job_rows
from tui.bindings import JOB
from tui.humanize import duration
from tui.job_log import JobLogFeed
from tui.screens.opaque import OpaqueScreen
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.log_view import LogView
from tui.widgets.text import set_text


def rank_line(r: RankView) -> str:
    """`rank 1  node1  running  step 1100  1.00 it/s  loss 1.61  ETA 1h05m  ← straggler`."""
    parts = [f"rank {r.rank}", r.pod, r.session_state or ("online" if r.online else "not online")]
    if r.step is not None:
        parts.append(f"step {r.step}")
    if r.rate is not None:
        parts.append(job_rows.pace_text(r.rate))
    if r.loss is not None:
        parts.append(f"loss {r.loss:.4g}")
    if r.eta_s is not None:
        parts.append(f"ETA {duration(r.eta_s)}")
    return "  ".join(parts) + (f"  ← {r.flag}" if r.flag else "")


class JobScreen(OpaqueScreen):
    """Follows one `jobs:` entry through the snapshots the app hands it (`show`)."""

    CSS_PATH = str(POD_STYLESHEET)  # the GPU rows look as on the pod screen
    BINDINGS = JOB

    DEFAULT_CSS = """
    JobScreen #job-header { height: auto; padding: 0 1; text-style: bold; }
    JobScreen #job-header.-findings { color: $warning; }
    JobScreen #job-ranks { height: auto; padding: 0 1; }
    JobScreen #job-nodes { height: auto; max-height: 12; }
    JobScreen #job-nodes GpuPanel { width: 1fr; height: auto; border: round $panel-lighten-2; }
    JobScreen #job-log { height: 1fr; min-height: 4; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, job: JobConfig) -> None:
        super().__init__()
        self.job = job
        self.snapshot = FleetSnapshot()
        self._composed = False
        self._feed: JobLogFeed | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="job-header")
        yield Static(id="job-ranks")
        with Horizontal(id="job-nodes"):
            for rank, pod in enumerate(self.job.pods):
                panel = GpuPanel(id=f"job-gpus-{rank}")
                panel.border_title = f"rank {rank} · {pod}"
                yield panel
        log = LogView(id="job-log")
        log.border_title = "log: every rank, merged"
        yield log
        yield KeyBar()

    def on_mount(self) -> None:
        self._composed = True
        fleet = getattr(self.app, "fleet", None)
        if self.job.session and fleet is not None:
            view = self.query_one("#job-log", LogView)
            self._feed = JobLogFeed(fleet, self.job, view)
            view.feed = self._feed
            view.append(self._feed.start())
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def on_unmount(self) -> None:
        if self._feed is not None:
            self._feed.stop()

    def show(self, snapshot: FleetSnapshot) -> None:
        self.snapshot = snapshot
        if self._composed and self.is_active:
            self._draw()

    def on_screen_resume(self) -> None:
        self._draw()

    def _draw(self) -> None:
        try:
            header = self.query_one("#job-header", Static)
        except NoMatches:  # taken down as an update arrived
            return
        s = summarize(self.job, self.snapshot)
        findings = job_rows.finding_line(s)
        set_text(header, job_rows.job_line(s) + ("\n" + findings if findings else ""))
        header.set_class(bool(findings), "-findings")
        set_text(self.query_one("#job-ranks", Static), "\n".join(rank_line(r) for r in s.ranks))
        history = self.app.history  # type: ignore[attr-defined]
        for rank, name in enumerate(self.job.pods):
            try:
                pod = self.snapshot.pod(name)
            except KeyError:
                continue
            self.query_one(f"#job-gpus-{rank}", GpuPanel).show(pod, lambda i, n=name: history.gpu(n, i))

    def action_back(self) -> None:
        self.app.pop_screen()
