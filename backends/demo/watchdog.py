"""The demo's last line of defence: cleans up after a demo that died without cleaning up.

`Demo.start` runs this file as a separate process (``python watchdog.py ROOT [DIR...]``)
holding the read end of a pipe whose write end only the demo has. However the demo
ends (a clean stop, an exception, SIGKILL, a test runner's timeout), the pipe closes
and this process wakes up. After a clean stop there is nothing left and it just exits;
otherwise it does what `Demo.stop` would have done: ``tmux kill-server`` on every pod's
private socket, SIGTERM then SIGKILL to every process carrying the demo's marker
(``GPUCTL_DEMO_ROOT=ROOT`` in its environment; Linux), and removes the demo's dirs.

Standard library only and self-contained: it runs as a plain script, without gpuctl's
packages on its path. It runs in a session of its own, so the terminal's Ctrl-C does
not kill it before the demo it watches.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

MARKER = "GPUCTL_DEMO_ROOT"


def marked_pids(root: str) -> list:
    """Processes (of this user) whose environment carries the demo's marker (Linux only).

    The demo itself uses this too (`sandbox.leftover_pids`); it lives here because
    this file must stay importable with the standard library alone.
    """
    marker = ("%s=%s" % (MARKER, root)).encode() + b"\0"
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = b"\0" + handle.read() + b"\0"
        except OSError:
            continue
        if b"\0" + marker in environ:
            found.append(int(entry))
    return found


def _kill_tmux(dirs: list) -> None:
    tmux = shutil.which("tmux") or shutil.which("tmux", path="/usr/local/bin:/usr/bin:/bin:/opt/homebrew/bin")
    if tmux is None:
        return
    for base in dirs:
        for folder, _, files in os.walk(base):
            if os.path.basename(folder).startswith("tmux-"):
                for name in files:
                    subprocess.run([tmux, "-S", os.path.join(folder, name), "kill-server"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=10, check=False)


def clean(root: str, dirs: list) -> None:
    """End everything of the demo at `root` and remove `dirs` (which include `root`)."""
    _kill_tmux(dirs)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked_pids(root)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [p for p in pids if p in marked_pids(root)]
        if not pids:
            break
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list) -> int:
    root, dirs = argv[0], argv
    try:
        while os.read(0, 4096):  # returns b"" once every writer is gone
            pass
    except OSError:
        pass
    if any(os.path.exists(path) for path in dirs) or marked_pids(root):
        clean(root, dirs)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(main(sys.argv[1:]))
