"""Builds the one command that reads GPU health on a pod (``gpuctl doctor``, ``gpuctl check``).

Like the agent, nothing is installed: the reader's source (``pod_agent/health.py``, standard
library only and importing nothing of its package) travels with the command, zlib-compressed and base64-encoded, and
``python3 -c`` runs it; it prints one JSON line. The payload comes on stdin as a
here-document of 76-character lines, not as one 8 KB argument, because a RunPod proxied
pod types commands into a terminal that takes lines of at most 4095 bytes
(``backends/transport/pty_shell.py``). Every other part is ``shlex.quote``d, and
``parse_health_output`` beside it reads the answer back, so the format has one place.
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any

from backends.agent_command import pack

_READER_PATH = Path(__file__).with_name("pod_agent") / "health.py"
_BOOTSTRAP = "import base64,sys,zlib;exec(zlib.decompress(base64.b64decode(sys.stdin.read())))"
_END = "GPUCTL_HEALTH_END"
HEALTH_TIMEOUT_S = 45.0
"""Three nvidia-smi execs (10 s limit each) and the kernel log (5 s per source)."""


@functools.lru_cache(maxsize=1)
def _payload() -> str:
    return pack(_READER_PATH.read_text(encoding="utf-8"))


def build_health_command(options: dict[str, Any] | None = None, python: str = "python3") -> str:
    """``python3 -c '<bootstrap>' '<json options>' <<'END'`` and the payload, every part shell-quoted.

    Args:
        options: the reader's options (``nvml``, ``kernel_log``, ``kmsg``).
        python: the interpreter, one word.
    """
    argument = json.dumps(options or {}, separators=(",", ":"), sort_keys=True)
    payload = _payload()
    lines = [payload[i:i + 76] for i in range(0, len(payload), 76)]
    head = " ".join(shlex.quote(part) for part in (python, "-c", _BOOTSTRAP, argument))
    return "\n".join([f"{head} <<'{_END}'", *lines, _END])


class HealthUnreadable(Exception):
    """The pod's answer holds no health report (no python3, the reader crashed...)."""


def parse_health_output(returncode: int | None, stdout: str, stderr: str = "") -> dict[str, Any]:
    """The reader's JSON report from a command's output.

    Raises:
        HealthUnreadable: with a plain message (python3 missing, a traceback's last line).
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                break
            if isinstance(report, dict) and "gpus" in report:
                return report
    text = (stderr or stdout).strip().splitlines()
    last = text[-1].strip() if text else f"exit status {returncode}"
    if returncode == 127 or "not found" in last:
        raise HealthUnreadable("python3 is not installed on the pod, so GPU health cannot be read there")
    raise HealthUnreadable(f"the health reader failed on the pod: {last}")
