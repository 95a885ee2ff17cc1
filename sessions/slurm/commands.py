"""Every Slurm command gpuctl sends to a login node, and the parsers of their answers.

One place to audit: each argument goes through `shlex.quote`, and values a job gets
from gpuctl (the checkpoint to resume from) travel in its environment, never in the
command text. Checkpoints are not listed here: `slurm.checkpoints` goes through the
one checkpoint listing (`sessions.checkpoints.listing`, see `jobs.newest_checkpoint`).

Which command says what (checked against Slurm 22.05, Debian 12's `slurm-wlm`):

* `squeue --json` lists jobs with states and node lists where the installed Slurm has
  the JSON output (21.08+); it ignores `-u` there, so the user filter is applied here
  too. Older ones get `squeue -h -o` with `|`-separated columns.
* `squeue` gives the StdOut path as submitted (`out-%j.log`); `scontrol show job -o`
  gives it expanded, plus the allocation (`TRES=...gres/gpu=N`) and `RunTime`. So the
  details of every job come from one `scontrol show job -o` (one line per job).
* `sacct` needs an accounting database that many clusters (and the test one) lack, so
  gpuctl does not depend on it: a finished job is still in `scontrol` for MinJobAge.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from backends.agent_command import agent_program
from backends.remote_path import quote_path

ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")
PLAIN_FORMAT = "%i|%j|%u|%T|%N|%D"
_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Z][A-Za-z0-9_:/]*)=")  # keys are CamelCase


@dataclass(frozen=True)
class SlurmJob:
    """One job as the login node reports it; None where Slurm says nothing.

    Attributes:
        job_id: Slurm's id, as text (an array task is `123_4`).
        name, user, state: JobName, the owner's user name, JobState (RUNNING...).
        nodes: the allocation's node names, expanded (empty while pending).
        stdout: the job's StdOut path on the cluster's filesystem, expanded.
        gpus: GPUs allocated (`gres/gpu` in its TRES), or None when Slurm does not count them.
        run_s: seconds it has run (RunTime).
    """

    job_id: str
    name: str | None = None
    user: str | None = None
    state: str | None = None
    nodes: tuple[str, ...] = ()
    stdout: str | None = None
    gpus: int | None = None
    run_s: float | None = None

    @property
    def active(self) -> bool:
        return (self.state or "") in ACTIVE_STATES


# ----------------------------------------------------------------------- listing


def squeue_command(*, json_output: bool, mine: bool = False) -> str:
    """The jobs the controller knows; `mine`: the login user's only (`--me`, Slurm 20.11+).
    Slurm 22.05's `--json` ignores filters, so callers filter by user again."""
    me = " --me" if mine else ""
    # `-t all`: ended jobs the controller still holds too, as --json lists them.
    return f"squeue --json{me}" if json_output else f"squeue -h -t all{me} -o {shlex.quote(PLAIN_FORMAT)}"


def parse_squeue_json(text: str) -> list[SlurmJob]:
    """Jobs from `squeue --json` (data_parser v0.0.38 and later: `jobs[]`)."""
    doc = json.loads(text)
    jobs = []
    for raw in doc.get("jobs", []) if isinstance(doc, dict) else []:
        if not isinstance(raw, dict) or raw.get("job_id") is None:
            continue
        state = raw.get("job_state")
        if isinstance(state, list):  # Slurm 23.02+ gives a list of flags
            state = state[0] if state else None
        jobs.append(SlurmJob(job_id=str(raw["job_id"]), name=raw.get("name"), user=raw.get("user_name"),
                             state=state, nodes=expand_nodelist(raw.get("nodes") or "")))
    return jobs


def parse_squeue_plain(text: str) -> list[SlurmJob]:
    """Jobs from `squeue -h -o PLAIN_FORMAT` (a name with `|` in it is kept whole)."""
    jobs = []
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) < 6 or not cells[0].strip():
            continue
        job_id, user, state, nodes = cells[0], cells[-4], cells[-3], cells[-2]
        name = "|".join(cells[1:-4])
        jobs.append(SlurmJob(job_id=job_id.strip(), name=name, user=user, state=state,
                             nodes=expand_nodelist(nodes)))
    return jobs


def json_unsupported(stderr: str) -> bool:
    """True when `squeue` said it has no JSON output (so gpuctl falls back to columns)."""
    words = stderr.lower()
    return any(w in words for w in ("unrecognized option", "invalid option", "unknown option",
                                    "not supported", "plugin"))


SCONTROL_JOBS = "scontrol show job -o"


def scontrol_job_command(job_id: str) -> str:
    return f"{SCONTROL_JOBS} {shlex.quote(job_id)}"


def tail_command(path: str, max_bytes: int) -> str:
    """The last `max_bytes` of a file (a job's StdOut)."""
    return f"tail -c {int(max_bytes)} -- {quote_path(path)}"


def parse_scontrol_jobs(text: str) -> dict[str, dict[str, str]]:
    """{job id: {key: value}} from `scontrol show job -o` (one line per job).

    Values may hold spaces (`JobName=train x`), so a line is cut at each ` Key=` (keys
    start with a capital: a name such as `train x=1` stays whole).
    """
    jobs: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        marks = list(_SCONTROL_KEY.finditer(line))
        fields = {}
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
            fields[m.group(1)] = line[m.end():end].strip()
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def with_details(job: SlurmJob, fields: dict[str, str] | None) -> SlurmJob:
    """`job` with StdOut, GPUs, run time (and anything squeue left out) from scontrol."""
    if not fields:
        return job
    user = job.user or (fields.get("UserId", "").split("(")[0] or None)
    nodes = job.nodes or expand_nodelist(fields.get("NodeList", ""))
    return SlurmJob(
        job_id=job.job_id, name=job.name or fields.get("JobName"), user=user,
        state=job.state or fields.get("JobState"), nodes=nodes,
        stdout=fields.get("StdOut") or None,
        gpus=gpus_in_tres(fields.get("AllocTRES") or fields.get("TRES") or ""),
        run_s=duration_s(fields.get("RunTime", "")),
    )


def gpus_in_tres(tres: str) -> int | None:
    """`gres/gpu=N` in a TRES string (`cpu=4,mem=8G,node=1,gres/gpu=2`), else None."""
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            return int(value)
    return None


def duration_s(text: str) -> float | None:
    """Seconds in Slurm's `[D-]HH:MM:SS` (or `MM:SS`), else None."""
    days, _, rest = text.strip().rpartition("-")
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or not 2 <= len(parts) <= 3 or (days and not days.isdigit()):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return float(seconds + int(days or 0) * 86400)


def expand_nodelist(text: str) -> tuple[str, ...]:
    """`node[01-03,07],gpu5` as node names (Slurm's hostlist syntax, one bracket per name)."""
    names: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", text.strip()):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not m:
            names.append(item)
            continue
        head, ranges, tail = m.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if hi and lo.isdigit() and hi.isdigit():
                names += [f"{head}{str(n).zfill(len(lo))}{tail}" for n in range(int(lo), int(hi) + 1)]
            else:
                names.append(f"{head}{part}{tail}")
    return tuple(n for n in names if n)


# ---------------------------------------------------------------------- actions


def sbatch_command(script: str, args: tuple[str, ...] = (), *, checkpoint: str | None = None) -> str:
    """Submit `script`; `--parsable` prints only the id. The checkpoint goes in the job's
    environment as `GPUCTL_CHECKPOINT` (sbatch exports its own environment by default)."""
    command = " ".join([*(shlex.quote(w) for w in ("sbatch", "--parsable", *args)), quote_path(script)])
    if checkpoint is not None:
        command = f"GPUCTL_CHECKPOINT={shlex.quote(checkpoint)} {command}"
    return command


def parse_sbatch(text: str) -> str | None:
    """The job id from `sbatch --parsable` (`123` or `123;cluster`), else None."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    job_id = first.split(";")[0].strip()
    return job_id if re.fullmatch(r"\d+(_\d+)?", job_id) else None


def scancel_command(job_id: str) -> str:
    return f"scancel {shlex.quote(job_id)}"


# ------------------------------------------------------------ GPUs in the allocation

AGENT_OPTIONS = {"tmux": False, "gpu_loop": False, "interval": 1.0, "disk_path": "~"}
"""One reading, no tmux (a compute node runs no sessions of ours), nvidia-smi by exec."""


def srun_agent_command(job_id: str, node: str) -> str:
    """gpuctl's agent as a step of the job on `node`, its program fed on stdin to
    `python3 -u -` (`--overlap` shares the job's resources, so a full allocation does
    not block it; no SSH to compute nodes). The agent says hello, sends one sample, and
    ends when its stdin does, which is at once: one reading per call."""
    srun = ["srun", f"--jobid={job_id}", "--overlap", "-w", node, "-N1", "-n1", "python3", "-u", "-",
            json.dumps(AGENT_OPTIONS, separators=(",", ":"), sort_keys=True)]
    return f"printf '%s\\n' {shlex.quote(agent_program())} | " + " ".join(shlex.quote(w) for w in srun)


def parse_agent_sample(text: str) -> dict[str, Any] | None:
    """The agent's first `sample` message (JSON lines), or None when it sent none."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("kind") == "sample":
            return value
    return None
