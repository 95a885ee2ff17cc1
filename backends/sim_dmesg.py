"""A simulated ``dmesg`` (and ``journalctl``) for tests and the demo: the kernel log a pod shows.

GPU faults reach a pod's owner as kernel lines from the NVIDIA driver, ``NVRM: Xid
(PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.``, and a container often
may not read them. This stand-in prints either, from the same JSON state file as
``sim_nvidia_smi`` (``$GPUCTL_SIM_GPU_STATE``), so a test or the demo drives a GPU and
its kernel log together. Standard library only, like the simulator it sits beside.

State (the ``kernel_log`` key; absent: a clean boot log)::

    "kernel_log": {
      "denied": false,              # true: answer as a container without CAP_SYSLOG does
      "lines": ["NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus."]
    }

Each line gets a ``[  seconds.micros]`` stamp unless it already starts with ``[``, as
``dmesg`` prints them. Denied, ``dmesg`` prints util-linux's own message and exits 1;
``journalctl`` prints what it prints in a container with no journal (exit 1).
"""

from __future__ import annotations

import json
import os
import shlex
import sys

STATE_ENV = "GPUCTL_SIM_GPU_STATE"
DENIED_MESSAGE = "dmesg: read kernel buffer failed: Operation not permitted"
NO_JOURNAL_MESSAGE = "No journal files were found."
BOOT_LINES = (
    "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) #45-Ubuntu SMP PREEMPT_DYNAMIC",
    "nvidia: loading out-of-tree module taints kernel.",
    "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024",
)


def xid_line(pci: str, xid: int, pid: int | str, text: str) -> str:
    """One driver line as ``dmesg`` shows it (the format drivers before 550 print).

    Args:
        pci: the GPU's bus address as the driver writes it, ``0000:3b:00``.
        xid: the Xid number.
        pid: the process the driver blames (``"'<unknown>'"`` when none).
        text: the driver's words, ``GPU has fallen off the bus.``
    """
    return "NVRM: Xid (PCI:%s): %d, pid=%s, %s" % (pci, xid, pid, text)


def kernel_log(state: dict) -> dict:
    """The ``kernel_log`` part of a state, or a clean boot log."""
    log = state.get("kernel_log")
    return log if isinstance(log, dict) else {"denied": False, "lines": []}


def render(lines) -> str:
    """Lines as ``dmesg`` prints them, each stamped with seconds since boot."""
    out = []
    for number, line in enumerate(list(BOOT_LINES) + list(lines)):
        out.append(line if line.startswith("[") else "[%12.6f] %s" % (0.5 + 3.25 * number, line))
    return "".join(line + "\n" for line in out)


def _load_state() -> dict:
    path = os.environ.get(STATE_ENV)
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    return state if isinstance(state, dict) else {}


def main(argv=None, program: str = "dmesg") -> int:
    """Answer as ``dmesg`` (or ``journalctl -k``) would; returns the exit status."""
    try:
        log = kernel_log(_load_state())
    except (OSError, ValueError) as exc:
        sys.stderr.write("sim %s: bad state file: %s\n" % (program, exc))
        return 2
    if log.get("denied"):
        if program == "journalctl":
            sys.stderr.write(NO_JOURNAL_MESSAGE + "\n")
            sys.stdout.write("-- No entries --\n")
        else:
            sys.stderr.write(DENIED_MESSAGE + "\n")
        return 1
    text = render(log.get("lines") or [])
    if program == "journalctl":  # journalctl -k: "kernel: " after a date and host
        text = "".join("Dec 06 07:00:00 pod kernel: %s\n" % line.split("] ", 1)[-1]
                       for line in text.splitlines())
    sys.stdout.write(text)
    return 0


def install_wrapper(bin_dir: str, python: str | None = None) -> list[str]:
    """Write executables ``dmesg`` and ``journalctl`` into ``bin_dir`` that run this stand-in.

    Returns:
        The two paths.
    """
    script = os.path.abspath(__file__)
    paths = []
    for program in ("dmesg", "journalctl"):
        path = os.path.join(bin_dir, program)
        body = "#!/bin/sh\nexec %s -S %s %s \"$@\"\n" % (
            shlex.quote(python or sys.executable), shlex.quote(script), program)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.chmod(path, 0o755)
        paths.append(path)
    return paths


if __name__ == "__main__":
    _program = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in ("dmesg", "journalctl") else "dmesg"
    sys.exit(main(sys.argv[2:], _program))
