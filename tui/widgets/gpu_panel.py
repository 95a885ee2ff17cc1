"""One line per GPU: health mark, name, temperature (coloured by threshold), utilization
and memory bars, power, and a sparkline of recent utilization; under the rows, why a GPU
is marked (its worst doctor check, `sessions.health`) and what to do."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from sessions.health.checks import HealthCheck, worst_by_gpu
from sessions.snapshot import GpuSample, PodSnapshot
from tui import humanize
from tui.status_table import hot_at, pod_alerts, short_gpu_name, temp_tone
from tui.widgets.meter import Meter
from tui.widgets.spark import Spark
from tui.widgets.text import set_text


def _pct(part: float | None, whole: float | None) -> float | None:
    return part / whole if part is not None and whole else None


class GpuRow(Horizontal):
    """One GPU; `show` changes only the values, never the widgets."""

    def compose(self) -> ComposeResult:
        yield Static(classes="gpu-name")
        yield Static(classes="gpu-temp")
        yield Meter(classes="gpu-util-bar")
        yield Static(classes="gpu-util")
        yield Meter(classes="gpu-mem-bar")
        yield Static(classes="gpu-mem")
        yield Static(classes="gpu-power")
        yield Spark(low=0, high=100, classes="gpu-spark")

    def show(self, gpu: GpuSample, position: int, util_history: Sequence[float],
             hot_c: float | None = None, stale: bool = False, health: HealthCheck | None = None) -> None:
        """`stale`: the pod is not online, so these are last known values: dimmed, and
        no hot/warm colour (a reading nobody can see now is no alarm). `health`: the
        GPU's worst doctor check: ✗ and red when it fails, ! and amber when it warns."""
        index = gpu.index if gpu.index is not None else position
        name, temp, util_bar, util, mem_bar, mem, power, spark = self.children
        status = health.status if health is not None else "pass"
        mark = HEALTH_MARKS.get(status, "")
        set_text(name, f"{mark}{index} {short_gpu_name(gpu.name)}")
        name.set_class(status == "fail", "-hot")
        name.set_class(status == "warn", "-warm")
        set_text(temp, humanize.number(gpu.temp_c, "°C"))
        tone = "" if stale else temp_tone(gpu.temp_c, hot_c)
        self.set_class(stale, "-stale")
        for widget in (temp, spark):
            widget.set_class(tone == "hot", "-hot")
            widget.set_class(tone == "warm", "-warm")
        util_bar.fraction = gpu.util_pct / 100 if gpu.util_pct is not None else None  # type: ignore[attr-defined]
        set_text(util, humanize.number(gpu.util_pct, "%"))
        mem_bar.fraction = _pct(gpu.mem_used_mib, gpu.mem_total_mib)  # type: ignore[attr-defined]
        set_text(mem, f"{humanize.mib(gpu.mem_used_mib)[:-1]}/{humanize.mib(gpu.mem_total_mib)}")
        if gpu.power_w is None:
            set_text(power, "-")
        else:
            set_text(power, f"{gpu.power_w:.0f}W")
        spark.show(util_history)  # type: ignore[attr-defined]


HEALTH_MARKS = {"fail": "✗ ", "warn": "! "}


class GpuPanel(VerticalScroll):
    """All GPUs of one pod; rows are added or removed only when the count changes."""

    can_focus = False

    def show(self, pod: PodSnapshot, history: Callable[[int], Sequence[float]]) -> None:
        """Show the pod's GPUs; `history(index)` gives a GPU's utilization series."""
        gpus = pod.gpus
        if not gpus:
            empty = self.query_children(".empty")
            if empty:
                set_text(empty.first(), _no_gpu_text(pod))
            else:
                self.remove_children()
                self.mount(Static(Content(_no_gpu_text(pod)), classes="empty"))
            return
        rows = list(self.query_children(GpuRow))
        notes = self.query_children(".gpu-health")
        if len(rows) != len(gpus) or not notes:
            self.remove_children()
            self.mount_all([*(GpuRow() for _ in gpus), Static(classes="gpu-health")])
            self.call_after_refresh(self.show, pod, history)  # children compose first
            return
        # Hot at the pod's alert threshold, as the fleet row and the alert itself say.
        hot_c = hot_at(pod_alerts(getattr(self.app, "config", None), pod.name))
        health = worst_by_gpu(pod.health_checks)
        for i, (row, gpu) in enumerate(zip(rows, gpus)):
            index = gpu.index if gpu.index is not None else i
            row.show(gpu, i, history(index), hot_c, pod.stale, health.get(index))
        _show_health_notes(notes.first(), [health[i] for i in sorted(health) if health[i].status != "pass"])


def _show_health_notes(widget: Static, marked: list[HealthCheck]) -> None:
    """One line per marked GPU: its worst check's reason and next step."""
    lines = [f"{HEALTH_MARKS[c.status]}GPU {c.gpu} {c.check}: {c.reason}" + (f" — {c.next_step}" if c.next_step else "")
             for c in marked]
    set_text(widget, "\n".join(lines))
    widget.display = bool(lines)
    widget.set_class(any(c.status == "fail" for c in marked), "-hot")
    widget.set_class(bool(marked) and all(c.status == "warn" for c in marked), "-warm")


def _no_gpu_text(pod: PodSnapshot) -> str:
    if pod.gpu_status == "none":
        return "This pod has no GPU (nvidia-smi and NVML found none)."
    if pod.gpu_status == "error":
        return f"GPUs could not be read: {pod.gpu_error or 'unknown error'}"
    if pod.state in ("connecting", "online", "reconnecting"):
        return "No GPU data yet."
    return f"{pod.state.capitalize()}: no GPU data."
