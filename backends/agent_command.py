"""Builds the shell command that starts gpuctl's agent on a pod over SSH.

Nothing is installed on the pod: the agent's source (``agent_script.py``) travels inside
the command line, zlib-compressed and base64-encoded, and ``python3 -c`` unpacks and
runs it. Run that way, the agent sees ``__name__ == "__main__"`` and
``sys.argv == ["-c", "<json options>"]``. Every part is ``shlex.quote``d: this is the
one place the agent's command line is written.
"""

from __future__ import annotations

import base64
import functools
import json
import shlex
import zlib
from pathlib import Path

from backends.agent_script import AGENT_PROTOCOL_VERSION

__all__ = ["AGENT_PROTOCOL_VERSION", "agent_payload", "agent_source", "build_agent_command"]

_AGENT_PATH = Path(__file__).with_name("agent_script.py")
# A one-liner without quotes of its own, so that shlex.quote keeps it readable. -u is
# passed too, but the agent writes with os.write anyway, so nothing waits in a buffer.
_BOOTSTRAP = 'import base64,zlib;exec(zlib.decompress(base64.b64decode("{payload}")))'


@functools.lru_cache(maxsize=1)
def agent_source() -> str:
    """The agent's source text, read once per gpuctl process."""
    return _AGENT_PATH.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def agent_payload() -> str:
    """The agent's source, zlib-compressed then base64-encoded (ASCII, no quotes)."""
    packed = zlib.compress(agent_source().encode("utf-8"), 9)
    return base64.b64encode(packed).decode("ascii")


def build_agent_command(options: dict, python: str = "python3") -> str:
    """Return the command line that runs the agent on a pod.

    Args:
        options: the agent's options, e.g. ``{"interval": 1.0, "disk_path": "~",
            "tmux": True}``; sent as one JSON argument (``~`` expands on the pod).
        python: the interpreter to run, one word (a name on PATH or an absolute path).

    Returns:
        ``python3 -u -c '<bootstrap>' '<json options>'``, every part shell-quoted.
    """
    code = _BOOTSTRAP.format(payload=agent_payload())
    argument = json.dumps(options, separators=(",", ":"), sort_keys=True)
    return " ".join(shlex.quote(part) for part in (python, "-u", "-c", code, argument))
