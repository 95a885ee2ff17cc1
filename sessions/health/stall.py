"""Why a run's step stopped moving: `hung`, `slow`, `idle` or `dead`, with the evidence.

Pure: it judges what the health reader saw of the session's processes (``processes``,
read twice a second apart on the pod: state letter, CPU use, kernel wait channel), the
GPUs, and the run's own rates. The kinds (issue 17):

* `dead`: no program runs under the pane any more (only its shell, or nothing): the
  training process is gone but the pane remains;
* `hung`: the step is frozen while the process is alive and either burns CPU
  (`BUSY_CPU_PCT`, or running at the moment it is looked at: a spinning loop, a
  deadlock on a spin lock, an NCCL wait polling) or
  one GPU is pinned while the others are idle (a collective waiting for a peer), or the
  GPUs sit idle while the process is running on the CPU;
* `idle`: the GPUs are idle and every process sleeps (``S``) or waits on disk or network
  (``D``): waiting for input, a data loader or a lock;
* `slow`: the step moves, but at under `SLOW_FRACTION` of its own recent rate.

A frozen step with busy GPUs and nothing pinned is none of these (the run may compute
without logging): `diagnose` says so rather than guessing.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sessions.tmux.pane_process import is_shell

BUSY_CPU_PCT = 25.0
"""A process using this much of a core counts as running: a spinning loop gets far more
on an idle machine, but a loaded pod shares its cores, and a sleeping one uses ~0."""
IDLE_GPU_PCT = 5.0
"""A GPU under this utilisation counts as idle: here and in watch's idle-GPU alert
(`sessions.watch.alerts.IDLE_UNDER_PCT` is this value), so "idle" means one thing."""
PINNED_GPU_PCT = 95.0
SLOW_FRACTION = 0.3
"""A rate under this fraction of the run's own recent rate is `slow`."""
WAITING = {"S": "sleeping", "D": "waiting on disk or network", "T": "stopped", "t": "stopped by a debugger",
           "Z": "a zombie (exited, not reaped)", "R": "running", "I": "idle"}


@dataclass(frozen=True)
class StallDiagnosis:
    """The verdict: `kind` (None when none fits), each piece of evidence in plain words,
    the `py-spy dump` of the python processes (or why there is none), and what NCCL's
    `ncclras` said when the pod has it and it answered."""

    kind: str | None
    evidence: tuple[str, ...]
    py_spy: str | None = None
    ncclras: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "evidence": list(self.evidence), "py_spy": self.py_spy, "ncclras": self.ncclras}


def _program(args: str) -> str:
    first = args.split(" ", 1)[0] if args else "?"
    return posixpath.basename(first) + (" " + args.split(" ", 1)[1] if " " in args else "")


def _short(args: str, width: int = 60) -> str:
    text = " ".join(_program(args).split())  # one line, whatever the arguments hold
    return text if len(text) <= width else text[: width - 1] + "…"


def _py_spy(raw: Mapping[str, Any] | None) -> str | None:
    if not raw:
        return None
    if not raw.get("installed"):
        return str(raw.get("error") or "py-spy is not installed on the pod")
    dumps = raw.get("dumps") or {}
    text = "\n".join(f"--- py-spy dump --pid {pid}\n{dump.rstrip()}" for pid, dump in dumps.items())
    return text or str(raw.get("error") or "py-spy found no python process")


def slow(recent_rate: float | None, usual_rate: float | None) -> StallDiagnosis | None:
    """`slow` when the step moves at under `SLOW_FRACTION` of its usual rate, else None."""
    if recent_rate is None or not usual_rate or recent_rate <= 0:
        return None
    if recent_rate < SLOW_FRACTION * usual_rate:
        return StallDiagnosis("slow", (f"{recent_rate:.3g} steps/s now against {usual_rate:.3g} steps/s before "
                                       f"({100 * recent_rate / usual_rate:.0f} %)",))
    return None


class SlowWatch:
    """One session's rate over time, to tell `slow` once per slowdown (pure; feed it).

    The usual rate is the median of the readings from `USUAL_WINDOW_S` back to `RECENT_S`
    ago; the run is slow when every reading of the last `RECENT_S` is under
    `SLOW_FRACTION` of it (one low reading is a checkpoint save or an eval, not a
    slowdown). Told once; told again only after the rate came back over half the usual.
    """

    USUAL_WINDOW_S = 900.0
    RECENT_S = 120.0

    def __init__(self) -> None:
        self._seen: list[tuple[float, float]] = []
        self._told = False

    def feed(self, now: float, rate: float | None) -> StallDiagnosis | None:
        """Add a reading; returns the `slow` verdict the first time it holds, else None."""
        if rate is None or rate <= 0:
            return None
        self._seen = [(t, r) for t, r in self._seen if now - t <= self.USUAL_WINDOW_S] + [(now, rate)]
        older = sorted(r for t, r in self._seen if now - t > self.RECENT_S)
        recent = [r for t, r in self._seen if now - t <= self.RECENT_S]
        if not older or self._seen[0][0] > now - self.RECENT_S - 1:
            return None
        usual = older[len(older) // 2]
        if self._told:
            self._told = max(recent) < 0.5 * usual
            return None
        if max(recent) >= SLOW_FRACTION * usual or now - min(t for t, _ in self._seen if now - t <= self.RECENT_S) \
                < self.RECENT_S / 2:
            return None
        self._told = True
        return slow(rate, usual)


def diagnose(processes: Mapping[str, Any] | None, gpu_utils: Sequence[float | None],
             py_spy: Mapping[str, Any] | None = None) -> StallDiagnosis:
    """Judge a frozen step from the reader's ``processes`` and the GPUs' utilization.

    Args:
        processes: ``read_processes``'s answer for the pane's process (None: not read).
        gpu_utils: each GPU's utilization in percent (None: unknown).
        py_spy: the reader's ``py_spy`` answer.
    """
    if processes is None:
        return StallDiagnosis(None, ("the session's processes could not be read",))
    procs = [p for p in processes.get("processes") or () if not is_shell(str(p.get("args") or ""))]
    if not processes.get("root_alive"):
        return StallDiagnosis("dead", ("the pane's process is gone",))
    if not procs:
        return StallDiagnosis("dead", ("no program runs under the pane any more, only its shell: "
                                       "the training process is gone",))
    evidence = []
    busy = [p for p in procs if (p.get("cpu_pct") or 0) >= BUSY_CPU_PCT or p.get("state") == "R"]
    for p in procs[:4]:
        state = str(p.get("state") or "?")
        where = f" in {p['wchan']}" if p.get("wchan") and p.get("wchan") != "0" else ""
        cpu = f", {p['cpu_pct']:.0f} % of a core" if p.get("cpu_pct") is not None else ""
        evidence.append(f"pid {p.get('pid')} {_short(str(p.get('args') or ''))}: "
                        f"{WAITING.get(state, state)}{where}{cpu}")
    known = [u for u in gpu_utils if u is not None]
    if known:
        evidence.append("GPU utilization " + ", ".join(f"{u:.0f} %" for u in known))
    idle = bool(known) and all(u < IDLE_GPU_PCT for u in known)
    pinned = [i for i, u in enumerate(gpu_utils) if u is not None and u >= PINNED_GPU_PCT]
    dump = _py_spy(py_spy)
    if len(known) > 1 and len(pinned) == 1 and all(u < IDLE_GPU_PCT for i, u in enumerate(gpu_utils)
                                                    if u is not None and i != pinned[0]):
        evidence.append(f"GPU {pinned[0]} pinned while the others are idle: a collective waiting for a peer")
        return StallDiagnosis("hung", tuple(evidence), dump)
    if busy and (idle or not known):
        evidence.append("the process runs on the CPU while the step does not move")
        return StallDiagnosis("hung", tuple(evidence), dump)
    if (idle or not known) and all(str(p.get("state")) in ("S", "D", "I") for p in procs):
        return StallDiagnosis("idle", tuple(evidence), dump)
    if busy:
        evidence.append("the process runs on the CPU while the step does not move")
        return StallDiagnosis("hung", tuple(evidence), dump)
    evidence.append("the GPUs are busy: the run may be working without logging")
    return StallDiagnosis(None, tuple(evidence), dump)
