"""A Slurm job's screen (`J` or Enter on its row under a `kind: slurm` pod).

What the job screen of a `jobs:` entry shows, where Slurm has it: the job's line
(id, state, name, progress, ETA, cost, from the Fleet's poller), every node's GPUs side
by side, each rank's reading where the StdOut's lines carry rank prefixes (the one
per-rank split, `sessions.progress.ranks`, that a pod session's log goes through), read
once on opening by gpuctl's agent as a job step inside the allocation
(`srun --overlap`, `sessions.slurm.jobs.read_gpus`), and its StdOut followed as it grows
by the one byte-for-byte follower `gpuctl logs -f` uses (`Fleet.logs`: `tail -F` on the
login node, resumed at the exact byte after a drop). Both run in workers over the login
node's link: the screen opens at once and says what failed in words. The poller does
not probe GPUs on every look (each probe is a job step).
"""

from __future__ import annotations

import codecs

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import Static

from sessions.errors import SshFailure
from sessions.slurm import jobs
from sessions.snapshot import FleetSnapshot, PodSnapshot
from themes.palettes import POD_STYLESHEET
from tui.bindings import JOB
from tui.fleet_rows import step_span
from tui.humanize import duration
from tui.screens.opaque import OpaqueScreen
from tui.sessions_table import rate_text
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.sessions_panel import ranks_text
from tui.widgets.log_view import LogView
from tui.widgets.text import set_text

LOG_TAIL_LINES = 200
"""How many of the StdOut's last lines the screen starts with, before following it."""
RANK_LINES = 8
"""At most this many ranks get a line of their own, the furthest behind first."""


def header_line(pod: str, v: jobs.JobView) -> str:
    """`Slurm job 12 · gpuctl-train · running on cluster · step 366/100000 · 3.2 it/s · ETA 8h · $0.10`."""
    job, p = v.job, v.progress
    parts = [f"Slurm job {job.job_id}", job.name or "-", f"{(job.state or '?').lower()} on {pod}"]
    if p is not None and p.step is not None:
        parts.append(f"step {step_span(p)}")
    if p is not None and p.rate:
        parts.append(rate_text(p))
    if p is not None and p.eta_s is not None:
        parts.append(f"ETA {duration(p.eta_s)}")
    if v.cost_usd is not None:
        parts.append(f"${v.cost_usd:,.2f}")
    return " · ".join(parts) + (ranks_text(p) if p is not None else "")


def rank_lines(v: jobs.JobView) -> str:
    """One line per rank of a log split by rank prefixes, furthest behind first (the job
    waits for it): `rank 1  step 120/1000  2.00 it/s  loss 1.61  ← slowest`; "" otherwise.
    Past `RANK_LINES` ranks, the rest in one line with their spread of steps."""
    p = v.progress
    if p is None or not p.ranks:
        return ""
    order = sorted(p.ranks, key=lambda rq: (rq[1].step is None, rq[1].step or 0))
    lines = []
    for rank, q in order[:RANK_LINES]:
        parts = [f"rank {rank}", f"step {step_span(q)}"]
        if q.rate:
            parts.append(rate_text(q))
        if q.loss is not None:
            parts.append(f"loss {q.loss:.4g}")
        lines.append("  ".join(parts) + ("  ← slowest" if rank == p.slowest_rank else ""))
    rest = [q.step for _, q in order[RANK_LINES:] if q.step is not None]
    if len(order) > RANK_LINES:
        spread = f", steps {min(rest)}–{max(rest)}" if rest else ""
        lines.append(f"… {len(order) - RANK_LINES} more ranks{spread}")
    return "\n".join(lines)


class SlurmJobScreen(OpaqueScreen):
    """Follows one Slurm job of one login node through the Fleet's poller (`show`)."""

    CSS_PATH = str(POD_STYLESHEET)  # the GPU rows look as on the pod screen
    BINDINGS = JOB

    DEFAULT_CSS = """
    SlurmJobScreen #slurm-header { height: auto; padding: 0 1; text-style: bold; }
    SlurmJobScreen #slurm-ranks { height: auto; padding: 0 1; }
    SlurmJobScreen #slurm-nodes { height: auto; max-height: 12; }
    SlurmJobScreen #slurm-nodes GpuPanel { width: 1fr; height: auto; border: round $panel-lighten-2; }
    SlurmJobScreen #slurm-log { height: 1fr; min-height: 4; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, pod: str, view: jobs.JobView) -> None:
        super().__init__()
        self.pod = pod
        self.view = view

    def compose(self) -> ComposeResult:
        yield Static(id="slurm-header")
        yield Static(id="slurm-ranks")
        with Horizontal(id="slurm-nodes"):
            for i, node in enumerate(self.view.job.nodes):
                panel = GpuPanel(id=f"slurm-gpus-{i}")
                panel.border_title = f"{node} · reading GPUs (srun --overlap)…"
                yield panel
        log = LogView(id="slurm-log")
        log.border_title = f"log: {self.view.job.stdout or 'no StdOut path in scontrol'}"
        yield log
        yield KeyBar()

    def on_mount(self) -> None:
        self._draw()
        self._read()
        self._follow()

    def show(self, _snapshot: FleetSnapshot) -> None:
        """A new snapshot: the poller may have a newer look at the job."""
        poller = getattr(getattr(self.app, "fleet", None), "slurm", None)
        found = [v for v in (poller.views.get(self.pod, ()) if poller is not None else ())
                 if v.job.job_id == self.view.job.job_id]
        if found:
            self.view = found[0]
        self._draw()

    def _draw(self) -> None:
        try:
            set_text(self.query_one("#slurm-header", Static), header_line(self.pod, self.view))
            ranks = self.query_one("#slurm-ranks", Static)
        except NoMatches:  # not composed yet, or taken down
            return
        text = rank_lines(self.view)
        set_text(ranks, text)
        ranks.display = bool(text)

    @work(exclusive=True, group="slurm-job", exit_on_error=False)
    async def _read(self) -> None:
        """Every node's GPUs, once: each reading is a job step in the user's accounting."""
        fleet = self.app.fleet  # type: ignore[attr-defined]
        try:
            async with fleet.borrow(self.pod) as transport:
                readings = await jobs.read_gpus(transport, self.view.job)
        except SshFailure as exc:
            for i, node in enumerate(self.view.job.nodes):
                self.query_one(f"#slurm-gpus-{i}", GpuPanel).border_title = f"{node} · {exc.message}"
            return
        history = self.app.history  # type: ignore[attr-defined]
        for i, reading in enumerate(readings):
            panel = self.query_one(f"#slurm-gpus-{i}", GpuPanel)
            panel.border_title = reading.node if reading.status != "error" else f"{reading.node} · {reading.error}"
            node = PodSnapshot(name=reading.node, host=reading.node, state="online", gpus=reading.gpus,
                               gpu_status=reading.status, gpu_error=reading.error)
            panel.show(node, lambda g, n=reading.node: history.gpu(n, g))

    @work(exclusive=True, group="slurm-log", exit_on_error=False)
    async def _follow(self) -> None:
        """The job's StdOut, its last lines then every byte appended, until the screen
        goes (Textual cancels a screen's workers as it is taken down)."""
        fleet = self.app.fleet  # type: ignore[attr-defined]
        view = self.query_one("#slurm-log", LogView)
        path = self.view.job.stdout
        if not path:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a chunk may end mid-character

        def notice(message: str) -> None:
            view.border_subtitle = message

        try:
            async for chunk in fleet.logs(self.pod, path, lines=LOG_TAIL_LINES, follow=True, on_notice=notice):
                if view.border_subtitle:
                    view.border_subtitle = ""  # bytes again: a notice about a drop is past
                view.append(decoder.decode(chunk))
        except SshFailure as exc:
            view.border_subtitle = f"cannot follow the log: {exc.message}"

    def action_back(self) -> None:
        self.app.pop_screen()
