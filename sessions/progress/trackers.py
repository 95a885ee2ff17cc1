"""Tracker files merged with the log: which figure to believe, and where it came from.

The agent reads a session's tracker files on the pod (``backends/pod_agent/``:
HF ``trainer_state.json``, TensorBoard events, a W&B summary, Lightning's
``metrics.csv``, MLflow's file store) and sends a ``trackers`` message when one
changed. Here those readings become frozen `TrackerReading`s, and `merge` combines them
with what the log says, figure by figure, naming each figure's source (`log`,
`trainer_state`, `tfevents`, `wandb`, `csv`, `mlflow`, `config`).

Why per figure: a tracker is exact but late (``trainer_state.json`` is written at each
checkpoint save), a log is live but may not print the total or the loss. So the newer
step wins, the tracker's total wins (``max_steps`` is exact, a bar's total may count an
epoch), the loss logged at the later step wins, and the rate comes from the log unless
only the tracker's timestamps can give one.

``gpuctl progress --dir RUN_DIR`` reads a local run directory with the agent's very
readers (`read_dir`) and `explain`s what it found.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from typing import Any

from sessions.progress.tracker import Progress

LOG = "log"
CONFIG = "config"
#: Figures a source is named for, in `SessionSnapshot.sources` and `--json`'s "sources".
FIGURES = ("step", "total", "rate", "loss", "lr", "epoch", "eta_s")
#: Which tracker's figures lead when several hold the same step.
ORDER = ("trainer_state", "tfevents", "mlflow", "csv", "wandb")
#: A tracker file last written this long before its session started belongs to an
#: earlier run in the same folder, not this one.
STALE_SLACK_S = 60.0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _loss(value: Any) -> float | None:
    """A loss may be nan (that is news for alerts), never inf or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class TrackerReading:
    """What one tracker file says; None where it says nothing.

    Attributes:
        source: `trainer_state`, `tfevents`, `wandb`, `csv` or `mlflow`.
        path: the file (or MLflow run folder) on the pod.
        mtime: when it was last written (pod clock), or None.
        step: the latest step it records; total: the run's step count (trainer_state).
        loss, loss_key, loss_step: the latest training loss, its name and its step.
        rate: steps per second from the file's own timestamps, or None.
        updated: the newest timestamp inside the file, or None.
        history: ``(step, loss)`` points, oldest first (the loss curve).
        eval: ``(name, value)`` of the latest evaluation; eval_step its step.
        best_checkpoint, best_metric: the Trainer's best model so far.
        error: why the file could not be read, or None.
    """

    source: str
    path: str
    mtime: float | None = None
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    loss_key: str | None = None
    loss_step: int | None = None
    lr: float | None = None
    epoch: float | None = None
    rate: float | None = None
    updated: float | None = None
    history: tuple[tuple[int, float], ...] = ()
    eval: tuple[tuple[str, float], ...] = ()
    eval_step: int | None = None
    best_checkpoint: str | None = None
    best_metric: float | None = None
    scalars: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def from_agent(cls, raw: dict[str, Any]) -> TrackerReading | None:
        """Build from one entry of a ``trackers`` message; None if it is not one."""
        if not isinstance(raw, dict) or not isinstance(raw.get("source"), str) or not isinstance(raw.get("path"), str):
            return None
        history = tuple(
            (p[0], float(p[1])) for p in raw.get("history") or ()
            if isinstance(p, (list, tuple)) and len(p) == 2 and _int(p[0]) is not None and _loss(p[1]) is not None
        )
        evals_raw = raw.get("eval")
        evals = evals_raw if isinstance(evals_raw, dict) else {}
        rate = _num(raw.get("rate"))
        return cls(
            source=raw["source"], path=raw["path"], mtime=_num(raw.get("mtime")),
            step=_int(raw.get("step")), total=_int(raw.get("total")), loss=_loss(raw.get("loss")),
            loss_key=_text(raw.get("loss_key")), loss_step=_int(raw.get("loss_step")),
            lr=_num(raw.get("lr")), epoch=_num(raw.get("epoch")),
            rate=rate if rate and rate > 0 else None, updated=_num(raw.get("updated")),
            history=history,
            eval=tuple((k, float(v)) for k, v in evals.items() if isinstance(k, str) and _num(v) is not None),
            eval_step=_int(raw.get("eval_step")), best_checkpoint=_text(raw.get("best_checkpoint")),
            best_metric=_num(raw.get("best_metric")),
            scalars=tuple(s for s in raw.get("scalars") or () if isinstance(s, str)),
            error=_text(raw.get("error")),
        )

    def to_json(self) -> dict[str, Any]:
        """This reading in `sessions --json` / `status --json` (each session's "trackers")."""
        return {
            "source": self.source, "path": self.path, "mtime": self.mtime, "step": self.step,
            "total": self.total, "loss": self.loss, "loss_key": self.loss_key, "loss_step": self.loss_step,
            "lr": self.lr, "epoch": self.epoch, "rate": self.rate, "updated": self.updated,
            "eval": dict(self.eval), "eval_step": self.eval_step,
            "best_checkpoint": self.best_checkpoint, "best_metric": self.best_metric,
            "history_points": len(self.history), "error": self.error,
        }


def readings_from(message: dict[str, Any]) -> tuple[TrackerReading, ...]:
    """The readings of one agent ``trackers`` message."""
    raw = message.get("trackers")
    found = (TrackerReading.from_agent(r) for r in raw) if isinstance(raw, list) else ()
    return tuple(r for r in found if r is not None)


@dataclass(frozen=True, slots=True)
class Merged:
    """The log's progress with tracker figures folded in.

    Attributes:
        progress: the figures to show (None when neither source has any).
        sources: ``(figure, source)`` for each figure that has a value.
        loss_history: the loss curve from the tracker the loss came from, oldest first.
    """

    progress: Progress | None
    sources: tuple[tuple[str, str], ...] = ()
    loss_history: tuple[float, ...] = ()


def current(readings: tuple[TrackerReading, ...], started: float | None) -> list[TrackerReading]:
    """Readings that belong to this run: readable, and written since it started."""
    fresh = []
    for r in readings:
        if r.error and r.step is None and r.loss is None:
            continue
        if started is not None and r.mtime is not None and r.mtime < started - STALE_SLACK_S:
            continue
        fresh.append(r)
    return fresh


def _lead(readings: list[TrackerReading]) -> TrackerReading | None:
    """The tracker with the latest step (ties: `ORDER`)."""
    ranked = [r for r in readings if r.step is not None or r.loss is not None]
    if not ranked:
        return None
    rank = {s: i for i, s in enumerate(ORDER)}
    return max(ranked, key=lambda r: (r.step if r.step is not None else -1, -rank.get(r.source, len(ORDER))))


def merge(progress: Progress | None, readings: tuple[TrackerReading, ...],
          started: float | None = None) -> Merged:
    """Fold tracker figures into the log's progress, naming each figure's source.

    Args:
        progress: what the log says (None: nothing recognised).
        readings: the session's latest tracker readings.
        started: when the session started (tmux's created time): older files are
            an earlier run's and are left out.
    """
    values = progress.to_json() if progress is not None else Progress().to_json()
    sources = {f: LOG for f in FIGURES if values.get(f) is not None}
    usable = current(readings, started)
    lead = _lead(usable)
    history: tuple[float, ...] = ()
    if lead is not None:
        log_step = values.get("step")
        if lead.step is not None and (log_step is None or lead.step > log_step):
            values["step"], sources["step"] = lead.step, lead.source
        total = next((r for r in usable if r.total), None)
        if total is not None:
            values["total"], sources["total"] = total.total, total.source
        with_loss = [r for r in usable if r.loss is not None]
        if with_loss:
            best = max(with_loss, key=lambda r: r.loss_step if r.loss_step is not None else (r.step or -1))
            at = best.loss_step if best.loss_step is not None else best.step
            if values.get("loss") is None or (at is not None and log_step is not None and at >= log_step):
                values["loss"], sources["loss"] = best.loss, best.source
            history = tuple(v for _, v in best.history)
        for figure in ("lr", "epoch"):
            if values.get(figure) is None:
                found = next((r for r in [lead, *usable] if getattr(r, figure) is not None), None)
                if found is not None:
                    values[figure], sources[figure] = getattr(found, figure), found.source
        if values.get("rate") is None:
            timed = next((r for r in [lead, *usable] if r.rate), None)
            if timed is not None:
                values["rate"], values["rate_unit"], sources["rate"] = timed.rate, "derived", timed.source
        _eta(values, sources)
        if not values.get("format"):
            values["format"] = lead.source
    if not values.get("format"):
        return Merged(progress)
    merged = Progress(**values)
    return Merged(merged, tuple((f, sources[f]) for f in FIGURES if f in sources and values.get(f) is not None),
                  history)


def _eta(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Recompute the ETA when a tracker changed the step, total or rate it rests on."""
    step, total, rate = values.get("step"), values.get("total"), values.get("rate")
    if not any(sources.get(f) not in (None, LOG) for f in ("step", "total", "rate")):
        return
    if step is not None and total and rate:
        values["eta_s"] = max(total - step, 0) / rate
        sources["eta_s"] = next(sources[f] for f in ("total", "step", "rate") if sources.get(f) not in (None, LOG))


def with_config_total(merged: Merged, total_steps: int | None) -> Merged:
    """The configured ``total_steps`` where neither the log nor a tracker gave one."""
    p = merged.progress
    if p is None or not total_steps or p.total is not None:
        return merged
    values = p.to_json()
    values["total"] = total_steps
    sources = dict(merged.sources)
    sources["total"] = CONFIG
    if values.get("eta_s") is None and p.step is not None and p.rate:
        values["eta_s"] = max(total_steps - p.step, 0) / p.rate
        sources["eta_s"] = CONFIG
    return Merged(Progress(**values), tuple((f, sources[f]) for f in FIGURES if f in sources), merged.loss_history)


def tracker_roots(workdir: str | None, trackers: tuple[str, ...] | None) -> list[str]:
    """Where the agent looks for a session's tracker files (empty: nowhere).

    Args:
        workdir: the session's workdir (None: none configured, so no search).
        trackers: the session's ``trackers:`` (None: search the workdir; ``()``: off).
            Relative paths are under the workdir (the home when it has none).
    """
    if trackers is None:
        return [workdir] if workdir else []
    roots = []
    for path in trackers:
        if path.startswith(("/", "~")) or not workdir:
            roots.append(path)
        else:
            roots.append(posixpath.join(workdir, path))
    return roots


# -- gpuctl progress --dir --------------------------------------------------------------


def read_dir(path: str) -> tuple[tuple[TrackerReading, ...], dict[str, Any]]:
    """Read a local run directory's tracker files with the agent's own readers."""
    from backends.pod_agent.trackers import TrackerWatch

    watch = TrackerWatch("local", [path])
    message = watch.check(0.0) or {}
    return readings_from(message), message.get("search") or {}


def dir_json(path: str) -> dict[str, Any]:
    """`gpuctl progress --dir RUN_DIR --json`: the merged figures, their sources, each file."""
    readings, info = read_dir(path)
    merged = merge(None, readings)
    figures = (merged.progress or Progress()).to_json()
    return {**figures, "sources": dict(merged.sources), "trackers": [r.to_json() for r in readings],
            "search": info}


def explain(path: str) -> str:
    """`gpuctl progress --dir RUN_DIR`: what was found, each figure's source, what is missing.

    Kept within 80 columns: a file's path (relative to RUN_DIR) on its own line, what it
    holds on the next ones.
    """
    readings, info = read_dir(path)
    lines = [f"{path}: tracker files"]
    if not readings:
        lines.append("  none found (looked for trainer_state.json, events.out.tfevents.*,")
        lines.append("  wandb/latest-run, metrics.csv and mlruns/, 5 folders deep)")
    for r in readings:
        lines.append(f"  {r.source:<13} {_relative(r.path, path)}")
        if r.error and r.step is None and r.loss is None:
            lines.append(f"  {'':<13} {r.error}")
            continue
        bits = [f"step {r.step}" + (f" of {r.total}" if r.total else "") if r.step is not None else "no step"]
        if r.loss is not None:
            bits.append(f"loss {r.loss:.4g} ({r.loss_key})")
        if r.history:
            bits.append(f"{len(r.history)} loss points")
        bits.extend(f"{k} {v:.4g}" for k, v in r.eval[:2])
        if r.error:
            bits.append(r.error)
        lines.extend(f"  {'':<13} {line}" for line in _wrap(bits, 64))
        if r.best_checkpoint:
            lines.append(f"  {'':<13} best: {_relative(r.best_checkpoint, path)}")
    if info.get("truncated"):
        lines.append(f"  the search stopped after {info.get('entries')} entries: name the files with `trackers:`")
    if info.get("skipped_dirs"):
        lines.append(f"  {info['skipped_dirs']} folder(s) too big to search were skipped")
    merged = merge(None, readings)
    p, sources = merged.progress, dict(merged.sources)
    if p is not None:
        lines.append("figures:")
        for figure in FIGURES:
            value = getattr(p, figure)
            if value is not None:
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                lines.append(f"  {figure:<6} {shown:<12} from {sources.get(figure, '?')}")
        for figure in FIGURES:
            if getattr(p, figure) is None:
                lines.append(f"  {figure:<6} {'-':<12} {_why_missing(figure, readings)}")
    return "\n".join(lines) + "\n"


def _relative(target: str, root: str) -> str:
    import os

    rel = os.path.relpath(target, root)
    return target if rel.startswith("..") else rel


def _wrap(bits: list[str], width: int) -> list[str]:
    lines, line = [], ""
    for bit in bits:
        if line and len(line) + 3 + len(bit) > width:
            lines.append(line)
            line = bit
        else:
            line = f"{line} · {bit}" if line else bit
    return lines + ([line] if line else [])


def _why_missing(figure: str, readings: tuple[TrackerReading, ...]) -> str:
    kinds = ", ".join(sorted({r.source for r in readings})) or "no files"
    if figure == "total":
        return "only trainer_state.json has it; or set total_steps:"
    if figure == "rate":
        return f"no timestamps in {kinds}"
    if figure == "eta_s":
        return "needs a total and a rate"
    if figure == "loss":
        names = sorted({s for r in readings for s in r.scalars})[:4]
        return "nothing named like a training loss" + (f" ({', '.join(names)})" if names else "")
    return f"not in {kinds}"
