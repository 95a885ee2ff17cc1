"""Why a progress figure is missing, in words for `gpuctl progress FILE`.

Why a module: "why is my rate not shown?" is the question `gpuctl progress` exists to
answer, and the answer depends on what the reading did find (a Trainer's dicts without
a bar, a step without timing). Kept apart from the parser so the hot path carries no
prose, and apart from the TUI so `--json` and the text report say the same.
"""

from __future__ import annotations

from sessions.progress.tracker import Progress

HOW_TOTAL = "give the session `total_steps:` in config"


def missing(p: Progress, followed: bool = False) -> dict[str, str]:
    """Each figure the reading lacks, with the reason.

    Args:
        p: the reading (of a whole file, or of a followed session when `followed`).
        followed: the text arrived live, so its arrival times were known.

    Returns:
        `{field: reason}` for step, total, rate, loss and eta_s where they are None;
        empty when nothing was recognised at all (the caller says that instead).
    """
    if p.format is None:
        return {}
    why: dict[str, str] = {}
    if p.step is None:
        if p.format == "hf_trainer":
            why["step"] = ("the Trainer printed metrics dicts but no progress bar (disable_tqdm=True?), "
                           "and its dicts carry no step: the step shows once its closing summary "
                           "(train_runtime) is printed")
        else:
            why["step"] = "the log names no step"
    if p.total is None and p.step is not None:
        why["total"] = (f"the log never prints a total (a bar without `/total`, `step N` lines "
                        f"without `/T`, Lightning's `?`): {HOW_TOTAL}")
    if p.rate is None and p.step is not None:
        if followed:
            why["rate"] = "the step has not advanced twice while followed"
        else:
            why["rate"] = ("unknown: the log prints no timing (no it/s, time per step or timestamps) "
                           "and a file has no arrival times; while gpuctl follows a session it times "
                           "the step lines as they arrive")
    if p.loss is None:
        why["loss"] = "no training loss printed (evaluation and validation losses are not taken)"
    if p.eta_s is None and p.step is not None:
        needs = [k for k, v in (("total", p.total), ("rate", p.rate)) if v is None]
        why["eta_s"] = f"needs the {' and the '.join(needs)}" if needs else "unknown"
    return why
