"""`sessions.tmux.pane_process`: what a pane runs, from `ps -A -o pid= -o ppid= -o args=`."""

from __future__ import annotations

import os
import subprocess

import pytest

from sessions.tmux.pane_process import PS_COMMAND, is_shell, parse_ps, running_command

# A gpuctl session after `resume:` (the wrapper, `bash -c`, the program), an idle
# interactive shell, torchrun with workers, and one started by hand whose bash exec'd.
PS = """\
    1     0 /sbin/init
  100     1 tmux new-session -d -s train
  200   100 sh -c trap : INT\nmkdir -p ~/.gpuctl/sessions
  201   200 bash -c export GPUCTL_CHECKPOINT=/w/ckpt-800; python3 train.py --resume "$GPUCTL_CHECKPOINT"
  202   201 python3 train.py --resume /w/ckpt-800
  203   202 python3 -c from multiprocessing.spawn import spawn_main
  300   100 -bash
  400   100 /bin/sh -c torchrun --nproc 8 train.py
  401   400 /usr/bin/python3 /usr/local/bin/torchrun --nproc 8 train.py
  402   401 /usr/bin/python3 -u train.py --local-rank=0
  403   401 /usr/bin/python3 -u train.py --local-rank=1
  500   100 python3 serve.py
garbage line
"""


@pytest.mark.parametrize("pane, expected", [
    (200, "python3 train.py --resume /w/ckpt-800"),
    (300, "-bash"),
    (400, "/usr/bin/python3 /usr/local/bin/torchrun --nproc 8 train.py"),
    (500, "python3 serve.py"),
    (999, None),
], ids=["resumed", "idle-shell", "torchrun", "exec-by-hand", "gone"])
def test_the_first_program_under_the_panes_shells(pane, expected):
    assert running_command(parse_ps(PS), pane) == expected


def test_shells_are_recognised_by_their_program_name():
    assert is_shell("-bash") and is_shell("/bin/sh -c x") and is_shell("bash -c 'python x'")
    assert not is_shell("python3 -c 'sh'") and not is_shell("")


def test_the_real_ps_output_parses_and_finds_this_process_under_a_shell():
    child = subprocess.Popen(["sh", "-c", "sleep 30; true"])
    try:
        done = subprocess.run(["sh", "-c", PS_COMMAND], capture_output=True, text=True, check=True)
        table = parse_ps(done.stdout)
        assert table[os.getpid()][0] == os.getppid()
        for _ in range(50):  # sh forks sleep at once; give it the moment it takes
            found = running_command(parse_ps(subprocess.run(["sh", "-c", PS_COMMAND], capture_output=True,
                                                            text=True).stdout), child.pid)
            if found == "sleep 30":
                break
        assert found == "sleep 30"
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("configured, running, same", [
    ("python3 train.py --seed 2", "/venv/bin/python train.py --seed 2", True),
    ("python train.py --out 'a b'", "python train.py --out a b", True),
    ("sleep 600", "python3 -c import time; time.sleep(600) /w/step_200.pt", False),
    ("python train.py", "python train.py --resume /w/ckpt", False),
])
def test_the_kill_dialog_names_the_configured_command_only_where_it_differs(configured, running, same):
    from tui.actions import same_command

    assert same_command(configured, running) is same
