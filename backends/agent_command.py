"""Builds the shell command that starts gpuctl's agent on a pod over SSH.

Nothing is installed on the pod: the agent is the package ``backends/pod_agent/``, and
every ``.py`` file in it travels inside the command line, bundled at send time into one
program (the sources as a dict, plus a small importer that serves them from memory),
zlib-compressed and base64-encoded; ``python3 -c`` unpacks and runs it. A module added
to the package is shipped without a list to edit. On the pod the package is named
``pod_agent`` (its modules import each other relatively), the entry point is
``pod_agent.main.main`` and ``sys.argv == ["-c", "<json options>"]``. Every part is
``shlex.quote``d: this is the one place the agent's command line is written.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import shlex
import zlib
from pathlib import Path

from backends.pod_agent.protocol import AGENT_PROTOCOL_VERSION

__all__ = ["AGENT_PROTOCOL_VERSION", "agent_payload", "agent_program", "agent_source", "agent_sources", "build_agent_command"]

PACKAGE_DIR = Path(__file__).with_name("pod_agent")
#: The package's name on the pod, where it is not inside ``backends``.
POD_PACKAGE = "pod_agent"
# A one-liner without quotes of its own, so that shlex.quote keeps it readable. -u is
# passed too, but the agent writes with os.write anyway, so nothing waits in a buffer.
_BOOTSTRAP = 'import base64,zlib;exec(zlib.decompress(base64.b64decode("{payload}")))'
# What the payload runs after the sources dict: an in-memory importer for the package,
# then the entry point. Python >= 3.8, standard library only; importlib.machinery is
# already loaded at start (importlib.abc and importlib.util would import more). The
# file names make a traceback say which module failed.
_RUNNER = '''
def _gpuctl_agent(sources):
    import sys
    from importlib.machinery import ModuleSpec

    class Bundle:
        def find_spec(self, name, path=None, target=None):
            if name not in sources:
                return None
            return ModuleSpec(name, self, origin="<gpuctl>/" + name.replace(".", "/") + ".py",
                              is_package=(name == %(package)r))

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            code = compile(sources[module.__name__], module.__spec__.origin, "exec")
            exec(code, module.__dict__)

    sys.meta_path.insert(0, Bundle())
    from %(package)s.main import main
    return main(sys.argv[1:])


import sys
sys.exit(_gpuctl_agent(SOURCES))
''' % {"package": POD_PACKAGE}


@functools.lru_cache(maxsize=1)
def agent_sources() -> dict[str, str]:
    """Module name on the pod -> source, for every ``.py`` file of the package (read once
    per gpuctl process, in a stable order so the payload is the same each time)."""
    sources = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        name = POD_PACKAGE if path.stem == "__init__" else "%s.%s" % (POD_PACKAGE, path.stem)
        sources[name] = _without_docstring(path.read_text(encoding="utf-8"))
    return sources


def _without_docstring(source: str) -> str:
    """The module's docstring blanked out: it is for readers of this repository, and
    dropping it keeps the payload as small as the one-file agent's was. Its lines stay,
    empty, so a line number in a traceback from the pod still points at the file here."""
    body = ast.parse(source).body
    first = body[0] if body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return source
    lines = source.splitlines(keepends=True)
    end = first.end_lineno or first.lineno
    for index in range(first.lineno - 1, end):
        lines[index] = "\n"
    return "".join(lines)


@functools.lru_cache(maxsize=1)
def agent_source() -> str:
    """The one program the pod runs: the package's sources and the importer that serves them."""
    return "SOURCES = %r\n%s" % (agent_sources(), _RUNNER)


def pack(source: str) -> str:
    """Python source zlib-compressed then base64-encoded (ASCII, no quotes): what the
    bootstraps here and in `backends/health_command.py` decode on the pod."""
    return base64.b64encode(zlib.compress(source.encode("utf-8"), 9)).decode("ascii")


@functools.lru_cache(maxsize=1)
def agent_payload() -> str:
    """The agent's program, packed (`pack`)."""
    return pack(agent_source())


def agent_program() -> str:
    """The agent as one line of Python (the bootstrap around the payload): what `-c`
    runs, or what `python3 -u -` reads on stdin where the command line cannot carry it
    (a Slurm job step: `srun ... python3 -u -`, see `sessions/slurm/commands.py`)."""
    return _BOOTSTRAP.format(payload=agent_payload())


def build_agent_command(options: dict, python: str = "python3") -> str:
    """Return the command line that runs the agent on a pod.

    Args:
        options: the agent's options, e.g. ``{"interval": 1.0, "disk_path": "~",
            "tmux": True}``; sent as one JSON argument (``~`` expands on the pod).
        python: the interpreter to run, one word (a name on PATH or an absolute path).

    Returns:
        ``python3 -u -c '<bootstrap>' '<json options>'``, every part shell-quoted.
    """
    code = agent_program()
    argument = json.dumps(options, separators=(",", ":"), sort_keys=True)
    return " ".join(shlex.quote(part) for part in (python, "-u", "-c", code, argument))
