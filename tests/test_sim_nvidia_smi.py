"""The simulated nvidia-smi prints what the real one prints, byte for byte.

The captures in tests/data/nvidia_smi are in the real tool's format; rendering the same
GPUs through the simulator must reproduce them exactly, so the simulator cannot drift
into a format only gpuctl's own parser accepts.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends import sim_nvidia_smi as sim

DATA = Path(__file__).parent / "data" / "nvidia_smi"
AGENT_FIELDS = [
    "index", "uuid", "name", "temperature.gpu", "utilization.gpu",
    "memory.used", "memory.total", "power.draw", "power.limit",
]

H100 = {"gpus": [
    {"index": 0, "uuid": "GPU-3a1f9e02-4c11-4b8a-9e2d-7f6b1c0a55e1", "name": "NVIDIA H100 80GB HBM3",
     "temperature.gpu": 34, "utilization.gpu": 0, "memory.used": 412, "memory.total": 81559,
     "power.draw": 68.21, "power.limit": 700},
    {"index": 1, "uuid": "GPU-8c2e7d13-5d22-4c9b-8f3e-6e5a2b1b44f2", "name": "NVIDIA H100 80GB HBM3",
     "temperature.gpu": 71, "utilization.gpu": 99, "memory.used": 79811, "memory.total": 81559,
     "power.draw": 688.73, "power.limit": 700.0},
]}
MIG_CONTAINER = {"gpus": [
    {"uuid": "GPU-9c73eb7b-8d6d-6c0e-dc13-97873e2ede40", "name": "NVIDIA A100-SXM4-80GB",
     "temperature.gpu": 30, "utilization.gpu": "[N/A]",
     "memory.used": "[Insufficient Permissions]", "memory.total": "[Insufficient Permissions]",
     "power.draw": 85.12, "power.limit": 400},
]}
MIG_LIST = {"gpus": [
    {"index": 0, "uuid": "GPU-838f60d9-651f-9166-ea42-f9da674a6947", "name": "NVIDIA A100-SXM4-40GB",
     "mig_devices": [
         {"profile": "3g.20gb", "uuid": "MIG-e07a497d-1bb6-5a42-b670-1c33bf55ab6e"},
         {"profile": "1g.5gb", "uuid": "MIG-ffda444c-c706-57c6-98c9-67c441a0b109"},
     ]},
    {"index": 1, "uuid": "GPU-c92e2d5d-4a69-f1cd-4df0-305f8606705a", "name": "NVIDIA A100-SXM4-40GB"},
]}


@pytest.mark.parametrize(
    ("state", "header", "units", "capture"),
    [
        (H100, True, True, "h100x2_header_units.csv"),
        (MIG_CONTAINER, False, False, "a100_mig_container.csv"),
    ],
    ids=["header+units", "noheader+nounits+placeholders"],
)
def test_render_query_matches_real_captures(state, header, units, capture):
    expected = (DATA / capture).read_text()
    assert sim.render_query(state, AGENT_FIELDS, header=header, units=units) == expected


@pytest.mark.parametrize(
    ("fields", "header", "units", "expected"),
    [
        (["utilization.gpu", "memory.used"], True, True,
         "utilization.gpu [%], memory.used [MiB]\n97 %, 61234 MiB\n"),
        # nounits drops units from values only: the real header keeps them.
        (["utilization.gpu", "memory.used"], True, False,
         "utilization.gpu [%], memory.used [MiB]\n97, 61234\n"),
        (["power.draw", "power.limit"], False, True, "312.50 W, 400.00 W\n"),
        (["power.draw"], False, False, "312.50\n"),
        (["temperature.gpu", "name"], True, True, "temperature.gpu, name\n45, NVIDIA A100-SXM4-80GB\n"),
        (["gpu_name", "memory.free", "count"], True, True,
         "name, memory.free [MiB], count\nNVIDIA A100-SXM4-80GB, 20686 MiB, 1\n"),
        (["fan.speed"], False, True, "[N/A]\n"),
    ],
)
def test_render_query_formats(fields, header, units, expected):
    assert sim.render_query(sim.load_state("/nonexistent"), fields, header=header, units=units) == expected


def test_render_query_prints_placeholder_strings_verbatim_and_missing_as_na():
    state = {"gpus": [{"name": "X", "power.draw": "[Not Supported]"}]}
    text = sim.render_query(state, ["index", "power.draw", "memory.used"], units=True, header=False)
    assert text == "0, [Not Supported], [N/A]\n"


def test_render_query_rejects_unknown_fields_like_nvidia_smi():
    with pytest.raises(sim.UnknownFieldError, match='Field "bogus" is not a valid field to query.'):
        sim.render_query(sim.DEFAULT_STATE, ["index", "bogus"])


def test_render_list_matches_real_mig_capture():
    assert sim.render_list(MIG_LIST) == (DATA / "a100_mig_list.txt").read_text()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("csv", (True, True)), ("csv,noheader", (False, True)), ("csv,nounits", (True, False)),
     ("csv,nounits,noheader", (False, False)), (" csv , noheader ", (False, True))],
)
def test_parse_format(spec, expected):
    assert sim.parse_format(spec) == expected


@pytest.mark.parametrize("spec", ["", "json", "csv,pretty", "noheader"])
def test_parse_format_rejects(spec):
    with pytest.raises(ValueError):
        sim.parse_format(spec)


# ------------------------------------------------------------------ the executable


@pytest.fixture
def smi(tmp_path):
    """Run the installed ``nvidia-smi`` wrapper with a given state; returns (rc, stdout)."""
    wrapper = sim.install_wrapper(str(tmp_path))
    state_path = tmp_path / "state.json"

    def run(args, state=None, raw_state=None):
        env = {"PATH": "/usr/bin:/bin"}
        if state is not None or raw_state is not None:
            state_path.write_text(raw_state if raw_state is not None else json.dumps(state))
            env[sim.STATE_ENV] = str(state_path)
        done = subprocess.run([wrapper, *args], capture_output=True, text=True, env=env, timeout=10)
        return done.returncode, done.stdout, done.stderr

    return run


QUERY = ["--query-gpu=" + ",".join(AGENT_FIELDS), "--format=csv,noheader,nounits"]


@pytest.mark.parametrize(
    ("args", "state", "rc", "stdout"),
    [
        (QUERY, H100, 0, "0, GPU-3a1f9e02-4c11-4b8a-9e2d-7f6b1c0a55e1, NVIDIA H100 80GB HBM3, 34, 0, 412, "
                         "81559, 68.21, 700.00\n1, GPU-8c2e7d13-5d22-4c9b-8f3e-6e5a2b1b44f2, NVIDIA H100 "
                         "80GB HBM3, 71, 99, 79811, 81559, 688.73, 700.00\n"),
        (["--query-gpu", "index,power.draw", "--format", "csv"], H100, 0,
         "index, power.draw [W]\n0, 68.21 W\n1, 688.73 W\n"),
        (["-L"], MIG_LIST, 0, (DATA / "a100_mig_list.txt").read_text()),
        (["--list-gpus"], H100, 0, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-3a1f9e02-4c11-4b8a-9e2d-7f6b1c0a55e1)\n"
                                   "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-8c2e7d13-5d22-4c9b-8f3e-6e5a2b1b44f2)\n"),
        (QUERY, {"gpus": H100["gpus"], "fail": "driver"}, 9, sim.DRIVER_FAILURE_MESSAGE + "\n\n"),
        (["-L"], {"gpus": H100["gpus"], "fail": "driver"}, 9, sim.DRIVER_FAILURE_MESSAGE + "\n\n"),
        (QUERY, {"gpus": [], "fail": "no-devices"}, 6, "No devices were found\n"),
        ([], {"gpus": [], "fail": None}, 6, "No devices were found\n"),
        (["--query-gpu=index,watts", "--format=csv"], H100, 2,
         'Field "watts" is not a valid field to query.\n\n'),
        (["--query-gpu=index"], H100, 2,
         "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n\n"),
    ],
    ids=["agent-query", "separate-args", "list-mig", "list", "driver-query", "driver-list",
         "no-devices", "empty-gpus", "unknown-field", "no-format"],
)
def test_cli(smi, args, state, rc, stdout):
    assert smi(args, state)[:2] == (rc, stdout)


def test_driver_message_is_the_real_one(smi):
    _, out, _ = smi(["-L"], {"fail": "driver"})
    assert out.startswith(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )


def test_missing_state_file_is_one_default_gpu(smi):
    rc, out, _ = smi(["-L"])
    assert rc == 0
    assert out == "GPU 0: NVIDIA A100-SXM4-80GB (UUID: %s)\n" % sim.DEFAULT_STATE["gpus"][0]["uuid"]


def test_broken_state_file_fails_loudly(smi):
    rc, out, err = smi(["-L"], raw_state="{not json")
    assert rc == 2 and out == ""
    assert "bad state file" in err


def test_bare_call_prints_a_table(smi):
    rc, out, _ = smi([], H100)
    assert rc == 0
    lines = out.splitlines()
    assert "Driver Version:" in lines[2]
    body = [line for line in lines[1:] if line.startswith(("|", "+"))]
    assert {len(line) for line in body} == {91}, "every table line has the real width"
    assert sum("NVIDIA H100 80GB HBM3" in line for line in lines) == 2
    assert any("689W /  700W" in line and "99%" in line for line in lines)


def test_runs_as_a_plain_script():
    """The demo runs it as ``python3 sim_nvidia_smi.py``; nothing outside the stdlib."""
    done = subprocess.run(
        [sys.executable, "-S", sim.__file__, "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=10,
    )
    assert (done.returncode, done.stdout) == (0, "NVIDIA A100-SXM4-80GB\n")


def test_delay_lets_tests_simulate_a_hung_tool(smi):
    started = time.monotonic()
    rc, _, _ = smi(["-L"], {"gpus": H100["gpus"], "delay_s": 0.3})
    assert rc == 0 and time.monotonic() - started >= 0.3


# ------------------------------------------------------------------ loop mode


@pytest.mark.parametrize(
    ("argv", "seconds"),
    [(["-l", "2"], 2.0), (["--loop=3"], 3.0), (["--loop", "1.5"], 1.5), (["-lms", "250"], 0.25),
     (["--loop-ms=100"], 0.1), (["--loop-ms", "40"], 0.04), ([], None), (["-L"], None)],
)
def test_loop_seconds(argv, seconds):
    assert sim.loop_seconds(["--query-gpu=index", "--format=csv"] + argv) == seconds


@pytest.mark.parametrize("argv", [["-l", "0"], ["-lms", "x"], ["--loop=-1"]])
def test_loop_seconds_rejects(argv):
    with pytest.raises(ValueError):
        sim.loop_seconds(argv)


def start_loop(tmp_path, state, *args):
    """Start the installed wrapper looping; returns (process, state_path, read_line)."""
    wrapper = sim.install_wrapper(str(tmp_path))
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    proc = subprocess.Popen([wrapper, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", sim.STATE_ENV: str(state_path)})
    buffer = [b""]

    def read_line(timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in buffer[0]:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "no line within %s s" % timeout
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            buffer[0] += chunk
        line, buffer[0] = buffer[0].split(b"\n", 1)
        return line.decode()

    return proc, state_path, read_line


def rewrite(path, state):
    """Replace the state file atomically, as the docstring asks."""
    scratch = path.with_suffix(".new")
    scratch.write_text(json.dumps(state))
    os.replace(scratch, path)


def test_loop_prints_batches_and_rereads_the_state(tmp_path):
    proc, state_path, read_line = start_loop(
        tmp_path, H100, "--query-gpu=index,temperature.gpu,count", "--format=csv,nounits", "-lms", "50")
    try:
        assert read_line() == "index, temperature.gpu, count"
        assert [read_line(), read_line()] == ["0, 34, 2", "1, 71, 2"]
        hotter = {"gpus": [dict(H100["gpus"][0], **{"temperature.gpu": 90})]}
        rewrite(state_path, hotter)
        seen = [read_line() for _ in range(20)]
        assert "0, 90, 1" in seen, seen
        assert "index, temperature.gpu, count" not in seen, "the header is printed once"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_loop_ends_with_the_real_failure(tmp_path):
    proc, state_path, read_line = start_loop(
        tmp_path, H100, "--query-gpu=index", "--format=csv,noheader", "--loop-ms=50")
    try:
        assert read_line() == "0"
        rewrite(state_path, {"gpus": H100["gpus"], "fail": "driver"})
        lines = []
        while (line := read_line()) is not None:
            lines.append(line)
        assert sim.DRIVER_FAILURE_MESSAGE in lines
        assert proc.wait(5) == sim.EXIT_DRIVER_FAILURE
    finally:
        proc.stdout.close()
        proc.stderr.close()


def test_loop_exits_quietly_when_its_reader_goes_away(tmp_path):
    proc, _, read_line = start_loop(tmp_path, H100, "--query-gpu=index", "--format=csv,noheader", "-lms", "20")
    assert read_line() == "0"
    proc.stdout.close()  # the agent is gone: the next write fails with EPIPE
    assert proc.wait(5) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_a_failing_state_fails_a_loop_at_once(smi):
    rc, out, _ = smi(QUERY + ["-lms", "100"], {"gpus": [], "fail": "no-devices"})
    assert (rc, out) == (6, "No devices were found\n")
