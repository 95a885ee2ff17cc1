"""What a tmux session is really running: the first program under its pane's shells.

tmux's `#{pane_current_command}` names the pane's foreground process-group leader,
which for every session gpuctl launched is its launch wrapper, `sh`; and the config's
`command:` is not what runs after a `resume:` relaunch, or in a session started by
hand. The kill dialog quotes what runs, so it asks the pod's process table: from the
pane's process (`SessionSnapshot.pid`) down through shells (the wrapper, `bash -c`) to
the first program that is not one, e.g. `python3 train.py --resume …/checkpoint-800`.

One command, POSIX `ps` options (procps, BusyBox, BSD and macOS ps accept them), and
its parser, here together.
"""

from __future__ import annotations

import posixpath

from backends.runner import Runner

PS_COMMAND = "ps -A -o pid= -o ppid= -o args="
"""Every process: pid, parent pid and its arguments (no header; nothing to quote)."""

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox"})
"""Programs looked through: a shell's child is what it runs."""


def parse_ps(stdout: str) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, arguments), from `PS_COMMAND`'s output; odd lines are skipped."""
    table: dict[int, tuple[int, str]] = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = (int(parts[1]), parts[2].strip() if len(parts) > 2 else "")
    return table


def is_shell(args: str) -> bool:
    """Whether `args` starts a shell (`-bash` is a login shell, `/bin/sh -c …` one too)."""
    first = args.split(None, 1)[0] if args.strip() else ""
    return posixpath.basename(first.lstrip("-")) in SHELLS


def running_command(table: dict[int, tuple[int, str]], pane_pid: int) -> str | None:
    """The arguments of the first non-shell process under `pane_pid` (the oldest child
    at each step, lowest pid), or of the last shell when no program runs under it;
    None when the pane's process is gone."""
    pid, seen = pane_pid, set()
    while pid in table and pid not in seen:
        seen.add(pid)
        args = table[pid][1]
        if not is_shell(args):
            return args
        children = sorted(child for child, (parent, _) in table.items() if parent == pid)
        if not children:
            return args
        pid = children[0]
    return None


async def what_runs(runner: Runner, pane_pid: int) -> str | None:
    """`running_command` on the pod behind `runner` (None when ps fails or says nothing)."""
    result = await runner.run(PS_COMMAND)
    if not result.ok:
        return None
    return running_command(parse_ps(result.stdout), pane_pid)
