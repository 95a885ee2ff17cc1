"""Fallback for pods without python3: one plain shell command per tick, parsed locally.

The agent (``backends/pod_agent/``) needs python3 on the pod. Some images have none, so gpuctl
execs ``probe_command(...)`` once per tick instead and turns its output into a sample with
exactly the agent's keys (``parse_probe_output``), reusing the agent's parsers. Costlier
per tick than the agent (an SSH exec each time), but it works on any POSIX box.

The output is a series of sections, each framed by marker lines::

    @@gpuctl-probe:begin:gpu@@
    <nvidia-smi output, stderr merged>
    @@gpuctl-probe:end:gpu:rc=0@@        (rc=absent when the tool is not installed)

Anything before the first marker (a chatty login script) is ignored.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time

from backends.remote_path import quote_path
from backends.pod_agent.gpus import NVIDIA_SMI_TIMEOUT_S
from backends.pod_agent.nvidia_smi import NVIDIA_SMI_QUERY_ARGS, classify_nvidia_smi_result
from backends.pod_agent.sample import make_sample
from backends.pod_agent.system import parse_uptime
from backends.pod_agent.tmux import TMUX_LIST_ARGS, classify_tmux_result

MARKER_PREFIX = "@@gpuctl-probe:"
SECTIONS = ("gpu", "disk", "load", "uptime", "tmux")
_MARKER = re.compile(r"^@@gpuctl-probe:(begin|end):([a-z]+)(?::rc=([0-9]+|absent))?@@\s*$")
_TIMEOUT_EXIT = 124  # what coreutils/busybox `timeout` exits with when it killed the tool
# df -P: "<fs> <1024-blocks> <used> <available> <capacity>% <mount>"; the fs name may hold
# spaces, so anchor on the run of numbers instead of splitting on whitespace.
_DF_ROW = re.compile(r"\s(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+/")


def _section(name: str, body: str) -> str:
    """Frame ``body`` (which sets ``rc``) with begin/end marker lines.

    The bare ``echo`` before the end marker starts a new line even when the tool's output
    did not end with one; the parser ignores the blank line this may add.
    """
    return "echo '%sbegin:%s@@'; %s; echo; echo \"%send:%s:rc=$rc@@\"" % (
        MARKER_PREFIX, name, body, MARKER_PREFIX, name)


def _tool(name: str, run: str) -> str:
    """``run`` if ``name`` is on PATH (rc = its status), else rc=absent."""
    return "if command -v %s >/dev/null 2>&1; then %s; rc=$?; else rc=absent; fi" % (name, run)


def probe_script(disk_path: str = "~") -> str:
    """The probe as one line of POSIX sh (no newlines: see ``probe_command``)."""
    query = " ".join(shlex.quote(arg) for arg in NVIDIA_SMI_QUERY_ARGS)
    seconds = int(NVIDIA_SMI_TIMEOUT_S)
    # A hung nvidia-smi must not hang the tick. `timeout` is tried rather than trusted:
    # old busybox builds want `timeout -t N`, and then we run nvidia-smi without one.
    smi = ("if timeout %d true >/dev/null 2>&1; then timeout %d nvidia-smi %s 2>&1; "
           "else nvidia-smi %s 2>&1; fi" % (seconds, seconds, query, query))
    tmux = "tmux " + " ".join(shlex.quote(arg) for arg in TMUX_LIST_ARGS) + " 2>&1"
    parts = [
        # Same path rules as the agent: ~ expands here, relative means from home (the
        # exec's working directory), a missing path falls back to home.
        "p=%s" % quote_path(disk_path or "~"),
        '[ -e "$p" ] || p="$HOME"',
        'case "$p" in /*) ;; *) p="$PWD/$p" ;; esac',
        _section("gpu", _tool("nvidia-smi", smi)),
        # LC_ALL=C: the header may be translated, the numbers never are; -P keeps each
        # filesystem on one line, -k fixes the unit at 1024 bytes.
        _section("disk", "printf '%s\\n' \"$p\"; LC_ALL=C df -P -k \"$p\" 2>&1; rc=$?"),
        _section("load", "cat /proc/loadavg 2>/dev/null; rc=$?"),
        _section("uptime", "cat /proc/uptime 2>/dev/null; rc=$?"),
        _section("tmux", _tool("tmux", tmux)),
    ]
    return "; ".join(parts)


def probe_command(disk_path: str = "~") -> str:
    """The command gpuctl execs once per tick on a pod without python3.

    The script runs under ``sh -c`` because an SSH exec goes through the user's login
    shell, which may be fish or csh; the script is kept on one line (csh rejects
    newlines inside quotes) and has no ``\\\\`` or ``\\'`` (fish reads those inside quotes).

    Args:
        disk_path: path whose filesystem to report; ``~`` and ``~/x`` expand on the pod.

    Returns:
        A shell command line, every variable part ``shlex.quote``d.
    """
    return "sh -c " + shlex.quote(probe_script(disk_path))


def split_sections(text: str) -> dict:
    """Map section name -> ``(body, rc)``; rc is an int, "absent", or None if cut off."""
    sections: dict[str, tuple[str, int | str | None]] = {}
    name: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        match = _MARKER.match(line)
        if match is None:
            if name is not None:
                body.append(line)
            continue
        kind, section, rc = match.groups()
        if kind == "begin":
            name, body = section, []
        elif name is not None and section == name:
            sections[name] = ("\n".join(body), int(rc) if rc and rc.isdigit() else rc)
            name = None
    if name is not None:  # output cut before the end marker
        sections[name] = ("\n".join(body), None)
    return sections


def parse_df(body: str):
    """Parse the disk section: the measured path, then ``df -P -k`` output."""
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return None
    path = posixpath.normpath(lines[0].strip())
    for line in lines[1:]:
        match = _DF_ROW.search(" " + line)
        if match:
            total_k, used_k = int(match.group(1)), int(match.group(2))
            return {"path": path, "used_bytes": used_k * 1024, "total_bytes": total_k * 1024}
    return None


def parse_loadavg(text: str):
    """The three load averages of /proc/loadavg, or None."""
    try:
        return [round(float(value), 2) for value in text.split()[:3]] if len(text.split()) >= 3 else None
    except ValueError:
        return None


def _gpu_from(section):
    if section is None:
        return ("error", "the probe printed no nvidia-smi section", []), None
    body, rc = section
    if rc == "absent":
        return ("none", None, []), None
    if rc is None:
        return ("error", "the probe output was cut off during nvidia-smi", []), "nvidia-smi"
    if rc == _TIMEOUT_EXIT:
        return ("error", "nvidia-smi did not answer within %d s" % NVIDIA_SMI_TIMEOUT_S, []), "nvidia-smi"
    return classify_nvidia_smi_result(rc, body, ""), "nvidia-smi"


def _tmux_from(section):
    if section is None:
        return "error", "the probe printed no tmux section", []
    body, rc = section
    if rc == "absent":
        return "none", None, []
    if rc is None:
        return "error", "the probe output was cut off during tmux", []
    return classify_tmux_result(rc, body, "")


def parse_probe_output(text: str, seq: int = 0, t: float | None = None) -> dict:
    """Turn the probe's output into a sample with exactly the agent's keys.

    Args:
        text: the exec's stdout.
        seq: the sample's sequence number (the caller counts ticks).
        t: the sample's unix time; default now.

    Returns:
        The same dict ``pod_agent.sample.collect_sample`` returns.
    """
    sections = split_sections(text)
    gpu, gpu_source = _gpu_from(sections.get("gpu"))
    disk_body = sections.get("disk", ("", None))[0]
    return make_sample(
        seq=seq,
        t=round(time.time(), 3) if t is None else t,
        gpu=gpu,
        gpu_source=gpu_source,
        disk=parse_df(disk_body),
        load=parse_loadavg(sections.get("load", ("", None))[0]),
        uptime_s=parse_uptime(sections.get("uptime", ("", None))[0]),
        tmux=_tmux_from(sections.get("tmux")),
    )
