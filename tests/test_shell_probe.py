"""The no-python fallback: the probe runs under plain sh and yields the agent's sample.

The probe runs through ``/bin/sh`` with a PATH holding only a temp folder: the tools it
may use (sh, df, cat, timeout), the simulated nvidia-smi and a fake tmux, never python3.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backends.pod_agent.sample import AgentState, collect_sample
from backends.shell_probe import (
    parse_df,
    parse_loadavg,
    parse_probe_output,
    probe_command,
    split_sections,
)
from backends.sim_nvidia_smi import install_wrapper

DRIVER_MESSAGE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)
GPUS = [
    {"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "temperature.gpu": 71,
     "utilization.gpu": 99, "memory.used": 79811, "memory.total": 81559, "power.draw": 688.73,
     "power.limit": 700.0},
    {"index": 1, "uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3", "temperature.gpu": "[N/A]",
     "utilization.gpu": "[Not Supported]", "memory.used": 412, "memory.total": 81559,
     "power.draw": "[N/A]", "power.limit": 700.0},
]
# A fake tmux: the real list-panes format (a session name with a space, two windows, an
# exited pane kept by remain-on-exit), and how tmux says "none".
FAKE_TMUX = """#!/bin/sh
case "$*" in
  "-u list-panes -a -F #{session_name}"*"#{pane_pid}") ;;
  *) echo "fake tmux: unexpected arguments: $*" >&2; exit 2 ;;
esac
if [ -n "$FAKE_TMUX_NO_SERVER" ]; then
  echo "no server running on /tmp/tmux-1000/default" >&2; exit 1
fi
printf 'train run\\t1700000000\\t1\\t2\\t0\\t0\\t0\\t\\t4001\\n'
printf 'train run\\t1700000000\\t1\\t2\\t1\\t0\\t0\\t\\t4002\\n'
printf 'eval\\t1700000100\\t0\\t1\\t0\\t0\\t1\\t3\\t4003\\n'
"""


class Pod:
    """A PATH with only what a python-less pod has, plus optional nvidia-smi and tmux."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.home = root / "home"
        self.bin.mkdir()
        self.home.mkdir()
        for tool in ("sh", "df", "cat", "timeout"):
            os.symlink(shutil.which(tool), self.bin / tool)
        self.state = root / "gpus.json"
        # The agent lists tmux only when the server's socket exists: give the fake a
        # stand-in socket where tmux would look, so both sides ask it.
        socket = root / "tmux" / ("tmux-%d" % os.getuid()) / "default"
        socket.parent.mkdir(parents=True)
        socket.touch()
        self.env = {"PATH": str(self.bin), "HOME": str(self.home), "TMUX_TMPDIR": str(root / "tmux"),
                    "GPUCTL_SIM_GPU_STATE": str(self.state)}

    def with_gpus(self, gpus, fail=None):
        self.state.write_text(json.dumps({"gpus": gpus, "fail": fail}))
        install_wrapper(str(self.bin), python=sys.executable)
        return self

    def with_tmux(self):
        (self.bin / "tmux").write_text(FAKE_TMUX)
        (self.bin / "tmux").chmod(0o755)
        return self

    def probe(self, disk_path="~", **env):
        done = subprocess.run(["/bin/sh", "-c", probe_command(disk_path)], capture_output=True,
                              text=True, env={**self.env, **env}, cwd=self.home, timeout=20)
        assert done.stderr == ""
        return done.stdout


@pytest.fixture
def pod(tmp_path):
    return Pod(tmp_path)


def test_probe_sample_has_the_agents_shape_and_values(pod, monkeypatch):
    pod.with_gpus(GPUS).with_tmux()
    sample = parse_probe_output(pod.probe(), seq=7, t=123.0)

    # The agent, reading the same pod in-process, must agree key for key.
    monkeypatch.delenv("TMUX", raising=False)  # inside tmux, $TMUX would name another socket
    for name, value in pod.env.items():
        monkeypatch.setenv(name, value)
    state = AgentState(disk_path="~", use_nvml=False)
    try:
        agent_sample = collect_sample(state)
    finally:
        state.close()  # stops the resident nvidia-smi it started
    assert list(sample) == list(agent_sample)
    for key in ("gpu_status", "gpu_error", "gpu_source", "gpus", "tmux_status", "tmux_error", "tmux"):
        assert sample[key] == agent_sample[key], key
    assert sample["disk"]["path"] == agent_sample["disk"]["path"] == str(pod.home)
    assert sample["disk"]["total_bytes"] == agent_sample["disk"]["total_bytes"]

    assert (sample["kind"], sample["v"], sample["seq"], sample["t"]) == ("sample", 1, 7, 123.0)
    assert sample["gpus"][1] == {
        "index": 1, "uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3", "temp_c": None,
        "util_pct": None, "mem_used_mib": 412, "mem_total_mib": 81559, "power_w": None,
        "power_limit_w": 700.0,
    }
    assert sample["tmux"] == [
        {"name": "train run", "created": 1700000000, "attached": 1, "windows": 2,
         "state": "running", "exit_status": None, "pid": 4001},
        {"name": "eval", "created": 1700000100, "attached": 0, "windows": 1,
         "state": "exited", "exit_status": 3, "pid": 4003},
    ]
    assert len(sample["load"]) == 3 and sample["uptime_s"] > 0


@pytest.mark.parametrize(
    ("setup", "env", "gpu", "tmux"),
    [
        ("bare", {}, ("none", None, None), ("none", None)),
        ("no-devices", {}, ("none", None, "nvidia-smi"), ("none", None)),
        ("driver", {}, ("error", DRIVER_MESSAGE, "nvidia-smi"), ("none", None)),
        ("tmux-no-server", {"FAKE_TMUX_NO_SERVER": "1"}, ("none", None, None), ("ok", None)),
    ],
)
def test_probe_states(pod, setup, env, gpu, tmux):
    if setup == "no-devices":
        pod.with_gpus([], "no-devices")
    elif setup == "driver":
        pod.with_gpus(GPUS, "driver")
    elif setup == "tmux-no-server":
        pod.with_tmux()
    sample = parse_probe_output(pod.probe(**env))
    assert (sample["gpu_status"], sample["gpu_error"], sample["gpu_source"]) == gpu
    assert (sample["tmux_status"], sample["tmux_error"], sample["tmux"]) == (*tmux, [])


@pytest.mark.parametrize(
    ("disk_path", "expected"),
    [
        ("~", "home"),
        ("~/my data", "home/my data"),
        ("my data", "home/my data"),  # relative to the exec's working directory, home
        ("~/missing", "home"),  # missing: fall back to home, as the agent does
        ("{root}/it's here", "it's here"),
    ],
)
def test_probe_disk_path(pod, tmp_path, disk_path, expected):
    for folder in ("home/my data", "it's here"):
        (tmp_path / folder).mkdir(exist_ok=True)
    sample = parse_probe_output(pod.probe(disk_path.format(root=tmp_path)))
    assert sample["disk"]["path"] == str(tmp_path / expected)
    assert sample["disk"]["total_bytes"] >= sample["disk"]["used_bytes"] > 0


def test_an_empty_disk_path_means_the_home_directory():
    assert probe_command("") == probe_command("~")


def test_probe_command_survives_other_login_shells():
    """One line (csh rejects newlines in quotes), no \\\\ or \\' (fish reads them)."""
    command = probe_command("~/a 'quoted' path")
    assert "\n" not in command
    assert "\\\\" not in command and "\\'" not in command
    assert shlex.split(command)[:2] == ["sh", "-c"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A chatty login script before the first marker is ignored.
        ("Welcome to your pod!\n@@gpuctl-probe:begin:gpu@@\nx\n@@gpuctl-probe:end:gpu:rc=0@@\n",
         {"gpu": ("x", 0)}),
        ("@@gpuctl-probe:begin:tmux@@\n\n@@gpuctl-probe:end:tmux:rc=absent@@\n", {"tmux": ("", "absent")}),
        # Cut off mid-section (connection dropped): the body so far, rc unknown.
        ("@@gpuctl-probe:begin:gpu@@\n0, GPU-a", {"gpu": ("0, GPU-a", None)}),
        ("@@gpuctl-probe:begin:load@@\n1 2 3\n@@gpuctl-probe:end:load:rc=0@@  \n", {"load": ("1 2 3", 0)}),
    ],
)
def test_split_sections(text, expected):
    assert split_sections(text) == expected


@pytest.mark.parametrize(
    ("rc", "body", "expected"),
    [
        ("124", "", ("error", "nvidia-smi did not answer within 5 s")),
        ("absent", "", ("none", None)),
        (None, "0, GPU-a", ("error", "the probe output was cut off during nvidia-smi")),
    ],
)
def test_gpu_section_outcomes(rc, body, expected):
    end = "" if rc is None else "\n@@gpuctl-probe:end:gpu:rc=%s@@\n" % rc
    sample = parse_probe_output("@@gpuctl-probe:begin:gpu@@\n" + body + end)
    assert (sample["gpu_status"], sample["gpu_error"]) == expected


def test_empty_output_is_errors_not_a_crash():
    sample = parse_probe_output("")
    assert sample["gpu_status"] == sample["tmux_status"] == "error"
    assert sample["disk"] is sample["load"] is sample["uptime_s"] is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/home/u\nFilesystem     1024-blocks      Used Available Capacity Mounted on\n"
         "/dev/vda         264212084  24283768  82107144      23% /\n",
         {"path": "/home/u", "used_bytes": 24283768 * 1024, "total_bytes": 264212084 * 1024}),
        # A filesystem name with spaces (a network share) and a mount point with one.
        ("/mnt/x/\nFilesystem 1024-blocks Used Available Capacity Mounted on\n"
         "//nas/team share 1000 400 600 40% /mnt/my share\n",
         {"path": "/mnt/x", "used_bytes": 400 * 1024, "total_bytes": 1000 * 1024}),
        ("/x\ndf: /x: No such file or directory\n", None),
        ("", None),
    ],
)
def test_parse_df(body, expected):
    assert parse_df(body) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.52 0.58 0.59 1/467 12345\n", [0.52, 0.58, 0.59]), ("", None), ("a b c", None), ("1 2", None)],
)
def test_parse_loadavg(text, expected):
    assert parse_loadavg(text) == expected
