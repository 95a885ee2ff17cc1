"""The remote agent: its parsers, its protocol, and the real process as a pod runs it.

Process tests start the agent exactly as gpuctl does (``build_agent_command`` through
``sh -c``), with a PATH holding only a temp folder: the simulated ``nvidia-smi`` (or
none), and a ``python3`` that runs with ``-S`` so the venv's pynvml cannot take over
on a machine that happens to have a GPU.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import time
import types
import zlib
import base64
from pathlib import Path

import pytest

from tests.support.procs import alive
from backends import agent_command, pod_agent
from backends.pod_agent import commands as agent_commands
from backends.pod_agent import gpus as agent_gpus
from backends.pod_agent import loop as agent_loop
from backends.pod_agent import nvidia_smi as agent_smi
from backends.pod_agent import protocol as agent_protocol
from backends.pod_agent import tmux as agent_tmux
from backends.pod_agent import tools as agent_tools
from backends.pod_agent.loop import Agent, next_deadline
from backends.pod_agent.nvidia_smi import classify_nvidia_smi_result, parse_nvidia_smi_csv
from backends.pod_agent.sample import AgentState, collect_sample
from backends.pod_agent.tmux import classify_tmux_result, parse_tmux_sessions
from backends.sim_nvidia_smi import install_wrapper

DATA = Path(__file__).parent / "data" / "nvidia_smi"
#: Every module of the agent package: each is shipped to the pod, so each obeys its rules.
AGENT_FILES = sorted(Path(pod_agent.__file__).parent.glob("*.py"))
SAMPLE_KEYS = [
    "kind", "v", "t", "seq", "gpu_status", "gpu_error", "gpu_source", "gpus", "disk",
    "load", "uptime_s", "tmux_status", "tmux_error", "tmux",
]
GPU_KEYS = [
    "index", "uuid", "name", "temp_c", "util_pct", "mem_used_mib", "mem_total_mib",
    "power_w", "power_limit_w",
]
DRIVER_MESSAGE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def gpu(index, uuid, name, temp, util, used, total, power, limit):
    return dict(zip(GPU_KEYS, (index, uuid, name, temp, util, used, total, power, limit)))


# ------------------------------------------------------------------ parsers


@pytest.mark.parametrize(
    ("capture", "count", "checks"),
    [
        ("a100x8_noheader_nounits.csv", 8, {
            0: gpu(0, "GPU-6b1e6a5e-7c8f-2d3a-9b4c-1e2f3a4b5c60", "NVIDIA A100-SXM4-80GB",
                   61, 100, 78923, 81920, 389.12, 400.0),
            7: gpu(7, "GPU-6b1e6a5e-7c8f-2d3a-9b4c-1e2f3a4b5c67", "NVIDIA A100-SXM4-80GB",
                   64, 100, 78925, 81920, 398.01, 400.0)}),
        # A header and units, as a user's own nvidia-smi call prints them.
        ("h100x2_header_units.csv", 2, {
            1: gpu(1, "GPU-8c2e7d13-5d22-4c9b-8f3e-6e5a2b1b44f2", "NVIDIA H100 80GB HBM3",
                   71, 99, 79811, 81559, 688.73, 700.0)}),
        ("rtx_laptop_header_nounits_na_power.csv", 1, {
            0: gpu(0, "GPU-0d4c3b2a-1908-4f7e-a6d5-c4b3a2918070", "NVIDIA GeForce RTX 3060 Laptop GPU",
                   52, 12, 1024, 6144, None, None)}),
        ("old_geforce_not_supported.csv", 2, {
            0: gpu(0, "GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", "GeForce GTX 750 Ti",
                   38, None, 1630, 2000, None, None),
            1: gpu(1, "GPU-2a3b4c5d-6e7f-8091-a2b3-c4d5e6f70829", "Quadro RTX 6000",
                   41, 7, 517, 24576, 31.52, 260.0)}),
        # MIG mode on: the whole card's utilization is [N/A] (it lives per MIG device).
        ("a100_mig_host.csv", 2, {
            0: gpu(0, "GPU-838f60d9-651f-9166-ea42-f9da674a6947", "NVIDIA A100-SXM4-40GB",
                   33, None, 36537, 40960, 87.41, 400.0)}),
        # Inside a container given one MIG slice, card memory is [Insufficient Permissions].
        ("a100_mig_container.csv", 1, {
            0: gpu(0, "GPU-9c73eb7b-8d6d-6c0e-dc13-97873e2ede40", "NVIDIA A100-SXM4-80GB",
                   30, None, None, None, 85.12, 400.0)}),
        # Unified memory (DGX Spark): no card memory to report, no power limit.
        ("gb10_unified_memory.csv", 1, {
            0: gpu(0, "GPU-aa11bb22-cc33-dd44-ee55-ff6677889900", "NVIDIA GB10",
                   39, 0, None, None, 5.04, None)}),
        # A warning line and a truncated row are skipped; [Unknown Error] cells are null.
        ("v100_warning_and_broken_rows.csv", 2, {
            0: gpu(0, "GPU-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "Tesla V100-SXM2-32GB",
                   40, 88, 30000, 32768, 250.0, 300.0),
            1: gpu(2, "GPU-7a8b9c0d-1e2f-4a3b-c4d5-e6f7a8b9c0d1", "Tesla V100-SXM2-32GB",
                   None, None, 12, 32768, None, 300.0)}),
    ],
)
def test_parse_nvidia_smi_csv_captures(capture, count, checks):
    gpus = parse_nvidia_smi_csv((DATA / capture).read_text())
    assert len(gpus) == count
    for position, expected in checks.items():
        assert gpus[position] == expected
    for row in gpus:
        assert list(row) == GPU_KEYS


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0, GPU-a, Odd, Name, With Commas, 1, 2, 3, 4, 5.5, 6",
         gpu(0, "GPU-a", "Odd, Name, With Commas", 1, 2, 3, 4, 5.5, 6.0)),
        ("0, [N/A], , [Unknown Error], nan, inf, 4, 5.555, 6",
         gpu(0, None, None, None, None, None, 4, 5.55, 6.0)),
        ("3,GPU-b,T4,45,97,10,15360,70.1,70", gpu(3, "GPU-b", "T4", 45, 97, 10, 15360, 70.1, 70.0)),
        ("  1 , GPU-c , A10G , 44.0 , 1 , 2 , 3 , 4 , 5 \r", gpu(1, "GPU-c", "A10G", 44, 1, 2, 3, 4.0, 5.0)),
    ],
    ids=["comma-in-name", "placeholders", "no-spaces", "padding-and-cr"],
)
def test_parse_nvidia_smi_csv_cells(line, expected):
    assert parse_nvidia_smi_csv(line + "\n") == [expected]


@pytest.mark.parametrize("text", ["", "\n\n", "garbage\n", "1, 2, 3\n"])
def test_parse_nvidia_smi_csv_ignores_junk(text):
    assert parse_nvidia_smi_csv(text) == []


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr", "expected"),
    [
        (0, "0, GPU-a, T4, 1, 2, 3, 4, 5, 6\n", "", ("ok", None, 1)),
        (6, "No devices were found\n", "", ("none", None, 0)),
        (9, DRIVER_MESSAGE + "\n\n", "", ("error", DRIVER_MESSAGE, 0)),
        (18, "", "Failed to initialize NVML: Driver/library version mismatch\n",
         ("error", "Failed to initialize NVML: Driver/library version mismatch", 0)),
        (3, "", "", ("error", "nvidia-smi exited with status 3", 0)),
        (0, "", "", ("ok", None, 0)),
    ],
    ids=["ok", "no-devices", "driver", "mismatch", "silent-failure", "empty"],
)
def test_classify_nvidia_smi_result(rc, stdout, stderr, expected):
    status, error, gpus = classify_nvidia_smi_result(rc, stdout, stderr)
    assert (status, error, len(gpus)) == expected


def pane(name, created=1700000000, attached=0, windows=1, window=0, index=0, dead=0, status="", pid=4242):
    """One ``list-panes -a -F TMUX_FORMAT`` row, as tmux prints it."""
    return "\t".join(str(cell) for cell in (name, created, attached, windows, window, index, dead, status, pid)) + "\n"


def session(name, created=1700000000, attached=0, windows=1, state="running", exit_status=None, pid=4242):
    return {"name": name, "created": created, "attached": attached, "windows": windows,
            "state": state, "exit_status": exit_status, "pid": pid}


def test_tmux_format_asks_for_every_field_in_order():
    assert agent_tmux.TMUX_LIST_ARGS[:4] == ("-u", "list-panes", "-a", "-F")
    assert agent_tmux.TMUX_FORMAT == (
        "#{session_name}\t#{session_created}\t#{session_attached}\t#{session_windows}\t"
        "#{window_index}\t#{pane_index}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_pid}"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (pane("train", attached=1, windows=3), [session("train", attached=1, windows=3)]),
        (pane("my run") + pane("eval", created=1700000100, windows=2, pid=7),
         [session("my run"), session("eval", created=1700000100, windows=2, pid=7)]),
        # tmux prints a tab inside a name as the two characters backslash-t.
        (pane("a\\tb"), [session("a\\tb")]),
        ("broken line\n\tx\t1\t2\n" + "a\t1\t0\t1\n", []),
        (pane("odd", created="soon"), [session("odd", created=None)]),
        # remain-on-exit kept a dead pane: the session exited with its status.
        (pane("done", dead=1, status=3, pid=99), [session("done", state="exited", exit_status=3, pid=99)]),
        # Killed by a signal: dead, but no exit status to show.
        (pane("killed", dead=1, status=""), [session("killed", state="exited")]),
        # One live pane keeps a session running; its dead pane's status is not the session's.
        (pane("mixed", windows=2, window=0, dead=1, status=1, pid=10) + pane("mixed", windows=2, window=1, pid=11),
         [session("mixed", windows=2, pid=10)]),
        # All dead: status and pid come from the first window's first pane, whatever the order.
        (pane("multi", windows=2, window=2, index=0, dead=1, status=7, pid=12)
         + pane("multi", windows=2, window=1, index=1, dead=1, status=5, pid=13)
         + pane("multi", windows=2, window=1, index=0, dead=1, status=2, pid=14),
         [session("multi", windows=2, state="exited", exit_status=2, pid=14)]),
        # An old tmux without pane_dead_status prints an empty cell.
        (pane("old", dead=1, status="", pid=""), [session("old", state="exited", pid=None)]),
    ],
    ids=["one", "two-with-space", "escaped-tab", "junk", "bad-number", "exited", "signalled",
         "one-pane-alive", "first-pane-wins", "old-tmux"],
)
def test_parse_tmux_sessions(text, expected):
    assert parse_tmux_sessions(text) == expected


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr", "expected"),
    [
        (0, pane("t"), "", ("ok", None, 1)),
        (1, "", "no server running on /tmp/tmux-1000/default\n", ("ok", None, 0)),
        (1, "", "error connecting to /tmp/tmux-0/default (No such file or directory)\n", ("ok", None, 0)),
        (1, "", "no sessions\n", ("ok", None, 0)),
        (1, "", "open terminal failed: not a terminal\n", ("error", "open terminal failed: not a terminal", 0)),
        (2, "", "", ("error", "tmux exited with status 2", 0)),
    ],
)
def test_classify_tmux_result(rc, stdout, stderr, expected):
    status, error, sessions = classify_tmux_result(rc, stdout, stderr)
    assert (status, error, len(sessions)) == expected


@pytest.mark.parametrize(
    ("deadline", "interval", "now", "expected"),
    [
        (10.0, 1.0, 10.2, 11.0),  # on time: the next grid point
        (10.0, 1.0, 11.0, 12.0),  # exactly on the next point: skip to the one after
        (10.0, 1.0, 13.5, 14.0),  # three ticks late: skip them, no burst
        (10.0, 0.5, 10.0, 10.5),
    ],
)
def test_next_deadline_skips_missed_ticks_without_drift(deadline, interval, now, expected):
    assert next_deadline(deadline, interval, now) == pytest.approx(expected)


# ------------------------------------------------------------------ python 3.8 rules


def test_the_package_is_all_there():
    names = {path.stem for path in AGENT_FILES}
    assert {"__init__", "main", "loop", "protocol", "sample", "gpus", "tmux", "logs", "trackers"} <= names


@pytest.mark.parametrize("path", AGENT_FILES, ids=lambda path: path.name)
def test_agent_parses_as_python_3_8(path):
    tree = ast.parse(path.read_text(), feature_version=(3, 8))
    if not tree.body or (len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)):
        return  # a docstring alone (the package's __init__) has no annotations to defer
    future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert future and any(a.name == "annotations" for a in future[0].names), (
        "annotations must stay unevaluated: `list[str]` and `X | None` fail at runtime on 3.8"
    )


# Names that exist only from 3.9+ (str/bytes/dict/pathlib/functools/math/random...).
PY39_PLUS = {
    "removeprefix", "removesuffix", "cache", "is_relative_to", "with_stem", "readlink",
    "lcm", "nextafter", "ulp", "randbytes", "bit_count", "to_thread", "waitstatus_to_exitcode",
    "pidfd_open", "zoneinfo", "graphlib", "tomllib", "pairwise", "aiter", "anext", "batched",
    "BooleanOptionalAction", "isascii_", "TypeAlias", "ParamSpec",
}


@pytest.mark.parametrize("path", AGENT_FILES, ids=lambda path: path.name)
def test_agent_uses_no_3_9_plus_apis_and_only_the_stdlib(path):
    """Checked module by module, so a module added to the package is checked too: on
    the pod there is the standard library and the package's own modules, reached by
    relative imports (an absolute ``backends...`` import would fail there)."""
    tree = ast.parse(path.read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & PY39_PLUS
    assert not [n for n in ast.walk(tree) if type(n).__name__ in ("Match", "TryStar")]
    # Runtime `X | Y` between names (type unions) is 3.10+; bitwise | on ints is fine,
    # and the agent has none of either.
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported - {"pynvml"} <= set(sys.stdlib_module_names)


def test_importing_the_agent_has_no_side_effects():
    """The local backend imports it: no hello, no loop, no reading stdin."""
    code = "".join("import backends.pod_agent.%s\n" % path.stem for path in AGENT_FILES if path.stem != "__init__")
    done = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.PIPE,
        capture_output=True, text=True, cwd=Path(agent_command.__file__).parent.parent, timeout=10,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# ------------------------------------------------------------------ agent_command


def test_build_agent_command_round_trips_through_the_shell():
    options = {"interval": 0.5, "disk_path": "~/it's a dir", "tmux": False}
    argv = shlex.split(agent_command.build_agent_command(options, python="/opt/py 3/bin/python3"))
    assert argv[:3] == ["/opt/py 3/bin/python3", "-u", "-c"]
    assert json.loads(argv[4]) == options
    payload = argv[3].split('b64decode("', 1)[1].split('")', 1)[0]
    assert zlib.decompress(base64.b64decode(payload)).decode() == agent_command.agent_source()
    assert argv[3] == 'import base64,zlib;exec(zlib.decompress(base64.b64decode("%s")))' % payload


def test_protocol_versions_agree():
    assert agent_command.AGENT_PROTOCOL_VERSION == agent_protocol.AGENT_PROTOCOL_VERSION == 1


def test_payload_is_built_once():
    agent_command.build_agent_command({})
    agent_command.build_agent_command({"interval": 2})
    assert agent_command.agent_payload.cache_info().misses <= 1
    assert agent_command.agent_source.cache_info().misses <= 1


def test_the_payload_bundles_every_module_of_the_package():
    sources = agent_command.agent_sources()
    expected = {"pod_agent" if p.stem == "__init__" else "pod_agent." + p.stem for p in AGENT_FILES}
    assert set(sources) == expected
    # Docstrings are blanked, not removed: line numbers in a pod's traceback stay right.
    main_py = Path(pod_agent.__file__).with_name("main.py").read_text()
    assert sources["pod_agent.main"].count("\n") == main_py.count("\n")
    assert "def main(argv):" in sources["pod_agent.main"]
    assert '"""The agent\'s entry point' in main_py and "The agent's entry point" not in sources["pod_agent.main"]


def test_a_module_added_to_the_package_is_shipped_without_a_list_to_edit(tmp_path, monkeypatch):
    package = tmp_path / "pod_agent"
    shutil.copytree(Path(pod_agent.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "extra.py").write_text('"""A new job."""\n\nVALUE = 7\n')
    monkeypatch.setattr(agent_command, "PACKAGE_DIR", package)
    sources = agent_command.agent_sources.__wrapped__()
    assert sources["pod_agent.extra"] == "\n\nVALUE = 7\n"
    assert set(sources) - set(agent_command.agent_sources()) == {"pod_agent.extra"}


# ------------------------------------------------------------------ in-process pieces


class FakeNVMLError(Exception):
    pass


def fake_pynvml(fail=()):
    """A pynvml stand-in with two GPUs; methods named in ``fail`` raise NVMLError."""
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    module.NVML_TEMPERATURE_GPU = 0
    module.shutdowns = 0

    def method(name, result):
        def call(*args):
            if name in fail:
                raise FakeNVMLError(name)
            return result(*args) if callable(result) else result
        setattr(module, name, call)

    method("nvmlInit", None)
    method("nvmlDeviceGetCount", 2)
    method("nvmlDeviceGetHandleByIndex", lambda i: ("handle", i))
    method("nvmlDeviceGetName", lambda h: b"NVIDIA A100-SXM4-80GB" if h[1] else "NVIDIA A100-SXM4-80GB")
    method("nvmlDeviceGetUUID", lambda h: "GPU-%d" % h[1])
    method("nvmlDeviceGetTemperature", lambda h, sensor: 40 + h[1])
    method("nvmlDeviceGetUtilizationRates", types.SimpleNamespace(gpu=97, memory=40))
    method("nvmlDeviceGetMemoryInfo", types.SimpleNamespace(used=61234 * 2**20 + 5, total=81920 * 2**20))
    method("nvmlDeviceGetPowerUsage", 312500)
    method("nvmlDeviceGetPowerManagementLimit", 400000)

    def shutdown():
        module.shutdowns += 1

    module.nvmlShutdown = shutdown
    return module


def test_pynvml_is_preferred_and_a_failing_field_is_null(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail={"nvmlDeviceGetPowerUsage"}))
    state = AgentState(disk_path="/", tmux=False)
    sample = collect_sample(state)
    assert (sample["gpu_status"], sample["gpu_source"]) == ("ok", "pynvml")
    assert sample["gpus"] == [
        gpu(0, "GPU-0", "NVIDIA A100-SXM4-80GB", 40, 97, 61234, 81920, None, 400.0),
        gpu(1, "GPU-1", "NVIDIA A100-SXM4-80GB", 41, 97, 61234, 81920, None, 400.0),
    ]
    state.close()
    assert sys.modules["pynvml"].shutdowns == 1


def test_pynvml_with_no_devices_is_no_gpu(monkeypatch):
    module = fake_pynvml()
    module.nvmlDeviceGetCount = lambda: 0
    monkeypatch.setitem(sys.modules, "pynvml", module)
    sample = collect_sample(AgentState(disk_path="/", tmux=False))
    assert (sample["gpu_status"], sample["gpu_source"], sample["gpus"]) == ("none", "pynvml", [])


def test_pynvml_that_will_not_init_falls_back_to_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail={"nvmlInit"}))
    monkeypatch.setenv("PATH", str(tmp_path))
    install_wrapper(str(tmp_path))
    state = AgentState(disk_path="/", tmux=False)
    assert state.gpu.source == "nvidia-smi"


def test_collect_sample_shape_and_sequence(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi, no tmux
    state = AgentState(disk_path=str(tmp_path / "missing"), use_nvml=False)
    first, second = collect_sample(state), collect_sample(state)
    assert list(first) == SAMPLE_KEYS
    assert (first["seq"], second["seq"]) == (0, 1)
    assert (first["gpu_status"], first["gpu_error"], first["gpu_source"], first["gpus"]) == ("none", None, None, [])
    assert (first["tmux_status"], first["tmux"]) == ("none", [])
    assert first["disk"]["path"] == os.path.expanduser("~"), "a missing path falls back to home"
    assert first["disk"]["total_bytes"] >= first["disk"]["used_bytes"] > 0
    assert len(first["load"]) == 3 and isinstance(first["uptime_s"], float)
    json.dumps(first, allow_nan=False)


def test_which_is_cached_and_rechecked_only_when_due(monkeypatch):
    calls = []
    monkeypatch.setattr(agent_tools.shutil, "which", lambda name: calls.append(name))
    locator = agent_tools.ToolLocator("nvidia-smi", recheck_s=30)
    for now in (0.0, 1.0, 29.0):
        assert locator.get(now) is None
    assert len(calls) == 1
    locator.get(30.0)
    assert len(calls) == 2


def test_a_hung_nvidia_smi_is_an_error_and_is_not_asked_again_at_once(monkeypatch, tmp_path):
    state_file = tmp_path / "gpus.json"
    state_file.write_text(json.dumps({"gpus": [{"name": "T4"}], "delay_s": 3}))
    monkeypatch.setenv("GPUCTL_SIM_GPU_STATE", str(state_file))
    monkeypatch.setenv("PATH", str(tmp_path))
    install_wrapper(str(tmp_path))
    reader = agent_gpus.GpuReader(use_nvml=False, timeout=0.3)
    started = time.monotonic()
    assert reader.read() == ("error", "nvidia-smi did not answer within 0.3 s", [])
    assert reader.read()[0] == "error"
    assert time.monotonic() - started < 2.0, "the second read must back off, not wait again"


@pytest.fixture
def agent_pipe():
    """An in-process Agent writing to a pipe; returns (agent, read_lines)."""
    read_fd, write_fd = os.pipe()
    state = AgentState(disk_path="/", tmux=False, use_nvml=False)
    agent = Agent(state, interval=1.0, in_fd=-1, out_fd=write_fd)

    def lines():
        os.set_blocking(read_fd, False)
        try:
            data = os.read(read_fd, 1 << 20)
        except BlockingIOError:
            return []
        return [json.loads(line) for line in data.decode().splitlines()]

    yield agent, lines
    state.close()
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.parametrize(
    ("line", "interval", "error"),
    [
        ('{"cmd": "interval", "seconds": 2.5}', 2.5, None),
        ('{"cmd": "interval", "seconds": 0.001}', 0.1, None),
        ('{"cmd": "interval", "seconds": 1e9}', 3600.0, None),
        ('{"cmd": "interval", "seconds": "fast"}', 1.0, "interval needs a number of seconds, got 'fast'"),
        ('{"cmd": "interval", "seconds": true}', 1.0, "interval needs a number of seconds, got True"),
        ('{"cmd": "interval", "seconds": NaN}', 1.0, "interval needs a number of seconds, got nan"),
        ('{"cmd": "reboot"}', 1.0, "unknown command 'reboot'"),
        ('["sample"]', 1.0, "a command is a JSON object with a string 'cmd'"),
        ('{"seconds": 1}', 1.0, "a command is a JSON object with a string 'cmd'"),
        ("{nope", 1.0, "malformed command (not JSON): "),
    ],
)
def test_command_dispatch(agent_pipe, line, interval, error):
    agent, lines = agent_pipe
    agent.handle_line(line)
    assert agent.interval == interval
    out = lines()
    if error is None:
        assert out == []
    else:
        assert len(out) == 1 and out[0]["kind"] == "error" and out[0]["v"] == 1
        assert out[0]["message"].startswith(error)


def test_sample_command_and_handler_table_is_extensible(agent_pipe):
    agent, lines = agent_pipe
    agent.commands["ping"] = lambda a, message: a.emit({"kind": "pong", "v": 1})
    agent.handle_line('{"cmd": "sample"}')
    agent.handle_line('{"cmd": "ping"}')
    out = lines()
    assert [o["kind"] for o in out] == ["sample", "pong"]
    assert out[0]["seq"] == 0
    assert "ping" not in agent_commands.COMMANDS, "extending one agent leaves the module table alone"


def test_split_and_oversized_command_lines(agent_pipe, monkeypatch):
    agent, lines = agent_pipe
    agent._feed(b'{"cmd": "inter')
    agent._feed(b'val", "seconds": 3}\n\n')
    assert agent.interval == 3.0
    monkeypatch.setattr(agent_loop, "MAX_COMMAND_BYTES", 64)
    agent._feed(b"x" * 100)
    agent._feed(b'yyy\n{"cmd": "interval", "seconds": 4}\n')
    assert agent.interval == 4.0
    out = lines()
    assert [o["message"] for o in out] == ["command line longer than 64 bytes, ignored"]


# ------------------------------------------------------------------ the real process


def interpreters():
    """The test interpreter, plus a python3.8 where one is installed (the oldest pods)."""
    found = [("py%d%d" % sys.version_info[:2], sys.executable)]
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates += [c for c in [shutil.which("python3.8")] if c]
    for candidate in candidates:
        # Ask it for its real path: a pyenv shim is a bash script the test PATH lacks.
        done = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            found.append(("py38", done.stdout.strip()))
            break
    return found


INTERPRETERS = interpreters()


class FakePod:
    """A temp 'pod': bin/ on PATH, a GPU state file, a home, a private tmux socket dir."""

    def __init__(self, root: Path, python: str = sys.executable):
        self.root = root
        self.bin = root / "bin"
        self.home = root / "home"
        for folder in (self.bin, self.home, root / "tmux"):
            folder.mkdir()
        self.python = self.bin / "python3"
        # -S: no site-packages, so no pynvml; the agent must live on the stdlib alone.
        self.python.write_text("#!/bin/sh\nexec %s -S \"$@\"\n" % shlex.quote(python))
        self.python.chmod(0o755)
        self.state_path = root / "gpus.json"
        self.env = {
            "PATH": str(self.bin), "HOME": str(self.home), "TMUX_TMPDIR": str(root / "tmux"),
            "GPUCTL_SIM_GPU_STATE": str(self.state_path),
        }

    def set_gpus(self, gpus, fail=None, **extra):
        # Write and rename: a looping nvidia-smi re-reads the file and must never see half.
        scratch = self.root / "gpus.json.new"
        scratch.write_text(json.dumps(dict({"gpus": gpus, "fail": fail}, **extra)))
        os.replace(scratch, self.state_path)
        if not (self.bin / "nvidia-smi").exists():
            install_wrapper(str(self.bin), python=sys.executable)

    def add_tool(self, name):
        os.symlink(shutil.which(name), self.bin / name)

    def start(self, options):
        return AgentProcess(agent_command.build_agent_command(options, python=str(self.python)), self.env)


class AgentProcess:
    """The agent under ``sh -c``, read line by line with timeouts."""

    def __init__(self, command, env):
        # Own process group: cleanup kills the agent too, even where sh forked it.
        self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     start_new_session=True)
        self._buffer = b""

    def read(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                raise AssertionError("no line from the agent within %s s" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise AssertionError("agent exited: %s" % self.proc.stderr.read().decode())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def read_kind(self, kind, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if message["kind"] == kind:
                return message

    def send(self, line):
        self.proc.stdin.write((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def pod(tmp_path):
    return FakePod(tmp_path)


@pytest.fixture
def started(pod):
    agents = []

    def start(options):
        agents.append(pod.start(options))
        return agents[-1]

    yield start
    for agent in agents:
        agent.close()


TWO_GPUS = [
    {"index": 0, "uuid": "GPU-0", "name": "NVIDIA A100-SXM4-80GB", "temperature.gpu": 45,
     "utilization.gpu": 97, "memory.used": 61234, "memory.total": 81920, "power.draw": 312.5,
     "power.limit": 400.0},
    {"index": 1, "uuid": "GPU-1", "name": "NVIDIA A100-SXM4-80GB", "temperature.gpu": 52,
     "utilization.gpu": "[Not Supported]", "memory.used": 10, "memory.total": 81920,
     "power.draw": "[N/A]", "power.limit": 400.0},
]


@pytest.mark.parametrize("python", [p for _, p in INTERPRETERS], ids=[i for i, _ in INTERPRETERS])
def test_the_one_payload_runs_alone_under_an_isolated_python(tmp_path, python):
    """A pod has no gpuctl: the command line alone must carry every module. Run under
    ``python -I -S`` (no PYTHONPATH, no site-packages, no script dir on sys.path) from a
    folder outside the repository, it says hello, samples, and answers a command."""
    wrapper = tmp_path / "python3"
    wrapper.write_text("#!/bin/sh\nexec %s -I -S \"$@\"\n" % shlex.quote(python))
    wrapper.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.log").write_text("step 1\nstep 2\n")
    command = agent_command.build_agent_command({"interval": 0.2, "tmux": False}, python=str(wrapper))
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=elsewhere, start_new_session=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(elsewhere), "PYTHONPATH": ""})
    agent = AgentProcess.__new__(AgentProcess)
    agent.proc, agent._buffer = proc, b""
    try:
        assert agent.read()["kind"] == "hello"
        assert agent.read_kind("sample")["seq"] == 0
        agent.send({"cmd": "tail", "id": "t", "path": "train.log", "lines": 1})
        tail = agent.read_kind("tail")
        assert (tail["id"], tail["data"], tail["error"]) == ("t", "step 2\n", None)
        proc.stdin.close()
        assert proc.wait(10) == 0
        assert proc.stderr.read() == b""
    finally:
        agent.close()


@pytest.mark.parametrize("python", [p for _, p in INTERPRETERS], ids=[i for i, _ in INTERPRETERS])
def test_hello_then_samples(tmp_path, python):
    pod = FakePod(tmp_path, python=python)
    pod.set_gpus(TWO_GPUS)
    agent = pod.start({"interval": 0.2, "disk_path": "~", "tmux": True})
    try:
        hello = agent.read()
        assert list(hello) == ["kind", "v", "python", "hostname", "pid", "gpu_source"]
        assert (hello["kind"], hello["v"], hello["gpu_source"]) == ("hello", 1, "nvidia-smi")
        assert hello["python"] == subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True).stdout.strip()
        samples = [agent.read() for _ in range(3)]
        assert [s["seq"] for s in samples] == [0, 1, 2]
        first = samples[0]
        assert list(first) == SAMPLE_KEYS
        assert (first["gpu_status"], first["gpu_error"], first["gpu_source"]) == ("ok", None, "nvidia-smi")
        assert first["gpus"] == [
            gpu(0, "GPU-0", "NVIDIA A100-SXM4-80GB", 45, 97, 61234, 81920, 312.5, 400.0),
            gpu(1, "GPU-1", "NVIDIA A100-SXM4-80GB", 52, None, 10, 81920, None, 400.0),
        ]
        assert first["disk"]["path"] == str(pod.home)
        assert (first["tmux_status"], first["tmux"]) == ("none", []), "no tmux on this PATH"
        gaps = [b["t"] - a["t"] for a, b in zip(samples, samples[1:])]
        assert all(0.1 < gap < 0.5 for gap in gaps), gaps
    finally:
        agent.close()


def test_interval_command_takes_effect(pod, started):
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 30})
    agent.read_kind("hello")
    assert agent.read()["seq"] == 0
    agent.send({"cmd": "interval", "seconds": 0.2})
    begun = time.monotonic()
    seqs = [agent.read(timeout=2)["seq"] for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert time.monotonic() - begun < 1.5


def test_sample_command_answers_at_once(pod, started):
    agent = started({"interval": 3600})
    agent.read_kind("hello")
    agent.read()
    agent.send({"cmd": "sample"})
    assert agent.read(timeout=2)["seq"] == 1


def test_bad_commands_give_error_lines_and_the_agent_lives_on(pod, started):
    agent = started({"interval": 3600})
    agent.read_kind("hello")
    agent.read()
    agent.send("this is not json")
    agent.send({"cmd": "explode"})
    first, second = agent.read(), agent.read()
    assert first["kind"] == second["kind"] == "error"
    assert first["message"].startswith("malformed command")
    assert second["message"] == "unknown command 'explode'"
    agent.send({"cmd": "sample"})
    assert agent.read()["kind"] == "sample"


def test_bad_options_are_reported_after_hello(pod, started):
    command = agent_command.build_agent_command({}, python=str(pod.python))
    agent = AgentProcess(command[: command.rindex(" ")] + " " + shlex.quote("{oops"), pod.env)
    try:
        assert agent.read()["kind"] == "hello"
        error = agent.read()
        assert error["kind"] == "error" and error["message"].startswith("options are not JSON")
        assert agent.read()["kind"] == "sample"
    finally:
        agent.close()


def test_exits_when_stdin_closes(pod, started):
    agent = started({"interval": 3600})
    agent.read_kind("hello")
    agent.proc.stdin.close()
    assert agent.proc.wait(timeout=2) == 0


def test_exits_when_stdout_breaks(pod, started):
    agent = started({"interval": 0.1})
    agent.read_kind("hello")
    agent.proc.stdout.close()
    assert agent.proc.wait(timeout=2) == 0
    assert b"Traceback" not in agent.proc.stderr.read()
    agent.proc.stdout = open(os.devnull, "rb")  # for the fixture's cleanup


@pytest.mark.parametrize(
    ("gpus", "fail", "expected"),
    [
        (None, None, ("none", None, None)),  # no nvidia-smi on PATH at all
        ([], "no-devices", ("none", None, "nvidia-smi")),
        (TWO_GPUS, "driver", ("error", DRIVER_MESSAGE, "nvidia-smi")),
    ],
    ids=["no-nvidia-smi", "no-devices", "driver-failure"],
)
def test_gpu_states(pod, started, gpus, fail, expected):
    if gpus is not None:
        pod.set_gpus(gpus, fail)
    agent = started({"interval": 3600})
    assert agent.read_kind("hello")["gpu_source"] == expected[2]
    sample = agent.read()
    assert (sample["gpu_status"], sample["gpu_error"], sample["gpu_source"]) == expected
    assert sample["gpus"] == []


@pytest.mark.requires_tools("tmux")
def test_reports_real_tmux_sessions(pod, started):
    pod.add_tool("tmux")
    tmux = [str(pod.bin / "tmux")]
    agent = started({"interval": 3600})
    agent.read_kind("hello")
    assert agent.read()["tmux_status"] == "ok", "no server yet: ok, empty"
    subprocess.run(tmux + ["new-session", "-d", "-s", "train run", shutil.which("sleep") + " 60"], env=pod.env, check=True)
    try:
        agent.send({"cmd": "sample"})
        sample = agent.read()
        assert (sample["tmux_status"], sample["tmux_error"]) == ("ok", None)
        [session] = sample["tmux"]
        assert (session["name"], session["attached"], session["windows"]) == ("train run", 0, 1)
        assert abs(session["created"] - time.time()) < 60
    finally:
        subprocess.run(tmux + ["kill-server"], env=pod.env)


def test_tmux_can_be_turned_off(pod, started):
    agent = started({"interval": 3600, "tmux": False})
    agent.read_kind("hello")
    sample = agent.read()
    assert (sample["tmux_status"], sample["tmux"]) == ("none", [])


# ------------------------------------------------------------------ nvidia-smi loop mode


def children(pid):
    """``{child_pid: argv}`` of the processes whose parent is ``pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc/%s/stat" % entry).read_bytes()
            argv = Path("/proc/%s/cmdline" % entry).read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2:].split()[1]) == pid:
            found[int(entry)] = [arg.decode() for arg in argv if arg]
    return found


def smi_loops(agent_pid):
    """Pids of the resident (looping) nvidia-smi children of the agent."""
    return [pid for pid, argv in children(agent_pid).items() if "-lms" in argv]


def wait_for(condition, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


def until_sample(agent, predicate, timeout=5.0):
    """Read samples until one satisfies ``predicate``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        sample = agent.read_kind("sample", timeout=max(0.05, deadline - time.monotonic()))
        if predicate(sample):
            return sample
        if time.monotonic() > deadline:
            raise AssertionError("no matching sample within %s s; last: %r" % (timeout, sample))


def test_loop_arguments_ask_for_the_count_and_the_period_in_ms():
    assert agent_smi.nvidia_smi_loop_args(0.25) == (
        "--query-gpu=" + ",".join(agent_smi.NVIDIA_SMI_FIELDS) + ",count",
        "--format=csv,noheader,nounits", "-lms", "250",
    )


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # Two GPUs per batch: complete when the count is reached, even mid-chunk.
        ([b"0, G0, T4, 1, 2, 3, 4, 5, 6, 2\n1, G1, T4, 1, 2, 3, 4, 5, 6, 2\n"], [0, 1]),
        # A row torn across reads waits for its end.
        ([b"0, G0, T4, 1, 2, 3, 4, 5, 6, 2\n1, G1, T4", b", 1, 2, 3, 4, 5, 6, 2\n"], [0, 1]),
        ([b"0, G0, T4, 1, 2, 3, 4, 5, 6, 2\n"], None),
        # count unknown: the batch ends when the index restarts.
        ([b"0, G0, T4, 1, 2, 3, 4, 5, 6, [N/A]\n1, G1, T4, 1, 2, 3, 4, 5, 6, [N/A]\n"
          b"0, G0, T4, 1, 2, 3, 4, 5, 6, [N/A]\n"], [0, 1]),
        # A warning line between rows is skipped; the newest batch wins.
        ([b"0, G0, T4, 1, 2, 3, 4, 5, 6, 1\nWARNING: infoROM is corrupted at gpu 0000:07:00.0\n"
          b"0, G0, T4, 9, 2, 3, 4, 5, 6, 1\n"], [0]),
    ],
    ids=["complete", "torn", "incomplete", "index-restart", "warning"],
)
def test_loop_batches(chunks, expected):
    loop = agent_smi.SmiLoop.__new__(agent_smi.SmiLoop)
    loop.batch, loop._partial, loop._rows, loop._expected = None, b"", [], None
    for chunk in chunks:
        loop._feed(chunk)
    got = None if loop.batch is None else [g["index"] for g in loop.batch[1]]
    assert got == expected
    if "warning" in str(chunks):
        assert loop.batch[1][0]["temp_c"] == 9


def test_loop_mode_keeps_one_nvidia_smi_and_follows_gpu_changes(pod, started):
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 0.2, "tmux": False})
    pid = agent.read_kind("hello")["pid"]
    first = agent.read_kind("sample")
    assert first["gpus"][0]["temp_c"] == 45 and len(first["gpus"]) == 2
    [loop] = wait_for(lambda: smi_loops(pid), what="a resident nvidia-smi")
    assert children(pid)[loop][-2:] == ["-lms", "200"]
    changed = [dict(TWO_GPUS[0], **{"temperature.gpu": 77}), TWO_GPUS[1]]
    pod.set_gpus(changed)
    sample = until_sample(agent, lambda s: s["gpus"][0]["temp_c"] == 77)
    assert (sample["gpu_status"], sample["gpu_error"], sample["gpu_source"]) == ("ok", None, "nvidia-smi")
    pod.set_gpus(changed[:1])  # a GPU falls off: the batch shrinks with the count
    until_sample(agent, lambda s: len(s["gpus"]) == 1)
    assert smi_loops(pid) == [loop], "the same resident nvidia-smi all along"


def test_interval_change_restarts_the_loop_at_the_new_period(pod, started):
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 0.2, "tmux": False})
    pid = agent.read_kind("hello")["pid"]
    [old] = wait_for(lambda: smi_loops(pid), what="a resident nvidia-smi")
    agent.send({"cmd": "interval", "seconds": 0.3})
    [new] = wait_for(lambda: [p for p in smi_loops(pid) if p != old], what="a restarted loop")
    assert children(pid)[new][-2:] == ["-lms", "300"]
    wait_for(lambda: not alive(old), what="the old loop to stop")
    assert until_sample(agent, lambda s: s["gpu_status"] == "ok")


def test_long_intervals_exec_per_tick_instead(pod, started):
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 60, "tmux": False})
    pid = agent.read_kind("hello")["pid"]
    assert agent.read_kind("sample")["gpu_status"] == "ok"
    assert smi_loops(pid) == []


def test_loop_failure_reports_as_before_then_falls_back_and_retries(pod, started):
    pod.set_gpus(TWO_GPUS, fail="driver")
    agent = started({"interval": 0.2, "tmux": False, "gpu_loop_retry_s": 0.5})
    pid = agent.read_kind("hello")["pid"]
    sample = agent.read_kind("sample")
    assert (sample["gpu_status"], sample["gpu_error"], sample["gpus"]) == ("error", DRIVER_MESSAGE, [])
    # The driver comes back: the exec fallback sees it on the next tick...
    pod.set_gpus(TWO_GPUS)
    until_sample(agent, lambda s: s["gpu_status"] == "ok")
    # ...and loop mode is tried again after the retry wait, and sticks.
    wait_for(lambda: smi_loops(pid), what="loop mode to come back")
    until_sample(agent, lambda s: s["gpu_status"] == "ok" and s["gpus"][0]["temp_c"] == 45)


def test_no_devices_in_loop_mode_is_no_gpu(pod, started):
    pod.set_gpus([], fail="no-devices")
    agent = started({"interval": 0.2, "tmux": False})
    agent.read_kind("hello")
    for _ in range(3):
        sample = agent.read_kind("sample")
        assert (sample["gpu_status"], sample["gpu_error"], sample["gpus"]) == ("none", None, [])


def test_a_stalled_loop_is_dropped_for_exec(monkeypatch, tmp_path):
    """A loop that stops printing is killed; the exec fallback reports the hang as before."""
    monkeypatch.setattr(agent_gpus, "NVIDIA_SMI_LOOP_STALL_MIN_S", 0.3)
    pod = FakePod(tmp_path)
    pod.set_gpus(TWO_GPUS)
    monkeypatch.setenv("PATH", str(pod.bin))
    monkeypatch.setenv("GPUCTL_SIM_GPU_STATE", str(pod.state_path))
    reader = agent_gpus.GpuReader(use_nvml=False, timeout=0.4, interval=0.1, loop_retry_s=60)
    try:
        assert reader.read()[0] == "ok" and reader.mode == "loop"
        pod.set_gpus(TWO_GPUS, delay_s=30)
        result = wait_for(lambda: (lambda r: r if r[0] == "error" else None)(reader.read()),
                          what="the stall to be noticed")
        assert result == ("error", "nvidia-smi did not answer within 0.4 s", [])
        assert reader.mode == "exec"
    finally:
        reader.close()


def test_the_loop_does_not_outlive_the_agent(pod, started):
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 0.2, "tmux": False})
    pid = agent.read_kind("hello")["pid"]
    [loop] = wait_for(lambda: smi_loops(pid), what="a resident nvidia-smi")
    agent.proc.stdin.close()  # the channel closes: the agent stops its loop on the way out
    assert agent.proc.wait(timeout=3) == 0
    wait_for(lambda: not alive(loop), timeout=3, what="the loop to stop with the agent")


def test_a_killed_agents_loop_dies_on_its_next_write(pod, started):
    """SIGKILL skips every cleanup; the loop then writes into a pipe nobody reads (EPIPE)."""
    pod.set_gpus(TWO_GPUS)
    agent = started({"interval": 0.2, "tmux": False})
    pid = agent.read_kind("hello")["pid"]
    [loop] = wait_for(lambda: smi_loops(pid), what="a resident nvidia-smi")
    os.kill(pid, 9)
    wait_for(lambda: not alive(loop), timeout=3, what="the orphaned loop to exit")


# ------------------------------------------------------------------ tmux without an exec


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "/tmp/tmux-{uid}/default"),
        ({"TMUX_TMPDIR": "/run/x"}, "/run/x/tmux-{uid}/default"),
        ({"TMUX_TMPDIR": ""}, "/tmp/tmux-{uid}/default"),
        ({"TMUX": "/tmp/tmux-5/work,123,0", "TMUX_TMPDIR": "/run/x"}, "/tmp/tmux-5/work"),
    ],
)
def test_tmux_socket_path(environ, expected):
    assert agent_tmux.tmux_socket_path(environ) == expected.format(uid=os.getuid())


@pytest.fixture
def tmux_pod(pod):
    """The pod with a tmux that logs each call, and a private server killed afterwards."""
    pod.calls = pod.root / "tmux-calls"
    wrapper = pod.bin / "tmux"
    wrapper.write_text("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n"
                       % (shlex.quote(str(pod.calls)), shlex.quote(shutil.which("tmux"))))
    wrapper.chmod(0o755)
    pod.tmux = lambda *args: subprocess.run([str(wrapper), *args], env=pod.env, check=True)
    yield pod
    subprocess.run([str(wrapper), "kill-server"], env=pod.env, capture_output=True)


@pytest.mark.requires_tools("tmux")
def test_no_tmux_server_costs_no_exec(tmux_pod, started):
    agent = started({"interval": 0.1})
    agent.read_kind("hello")
    for _ in range(5):
        sample = agent.read_kind("sample")
        assert (sample["tmux_status"], sample["tmux_error"], sample["tmux"]) == ("ok", None, [])
    assert not tmux_pod.calls.exists(), "tmux was exec'd although no server runs"
    tmux_pod.tmux("new-session", "-d", "-s", "train", shutil.which("sleep") + " 60")
    sample = until_sample(agent, lambda s: s["tmux"])
    assert [s["name"] for s in sample["tmux"]] == ["train"]
    assert "list-panes" in tmux_pod.calls.read_text().split()


@pytest.mark.requires_tools("tmux")
def test_exited_pane_reports_state_and_exit_status(tmux_pod, started):
    sleep = shutil.which("sleep")
    tmux_pod.tmux("new-session", "-d", "-s", "keep", sleep + " 60")
    tmux_pod.tmux("set-option", "-g", "remain-on-exit", "on")
    tmux_pod.tmux("new-session", "-d", "-s", "job", "exit 3")
    tmux_pod.tmux("new-window", "-t", "keep", sleep + " 60")
    agent = started({"interval": 0.1})
    agent.read_kind("hello")
    sample = until_sample(agent, lambda s: any(x["exit_status"] is not None for x in s["tmux"]))
    sessions = {x["name"]: x for x in sample["tmux"]}
    assert sample["tmux_status"] == "ok"
    assert list(sessions) == ["job", "keep"]
    job, keep = sessions["job"], sessions["keep"]
    assert (job["state"], job["exit_status"], job["windows"]) == ("exited", 3, 1)
    assert (keep["state"], keep["exit_status"], keep["windows"]) == ("running", None, 2)
    assert list(keep) == ["name", "created", "attached", "windows", "state", "exit_status", "pid"]
    # pid is the first pane's program: the sleep of keep's first window.
    assert Path("/proc/%d/cmdline" % keep["pid"]).read_bytes().split(b"\0")[:2] == [sleep.encode(), b"60"]


def listings(pod):
    """How many times the agent ran ``tmux list-panes`` so far."""
    return pod.calls.read_text().split().count("list-panes") if pod.calls.exists() else 0


@pytest.mark.requires_tools("tmux")
def test_a_running_server_is_listed_again_only_when_it_changes(tmux_pod, started):
    sleep = shutil.which("sleep")
    tmux_pod.tmux("new-session", "-d", "-s", "train", sleep + " 60")
    tmux_pod.tmux("set-option", "-g", "remain-on-exit", "on")
    agent = started({"interval": 0.1, "tmux_refresh_s": 60})
    agent.read_kind("hello")
    for _ in range(10):
        assert [s["name"] for s in agent.read_kind("sample")["tmux"]] == ["train"]
    quiet = listings(tmux_pod)
    assert quiet <= 3, "%d listings in 10 ticks of an unchanged server" % quiet
    # A new session is a new child of the server: seen at once, not after 60 s.
    tmux_pod.tmux("new-session", "-d", "-s", "job", "sleep 0.3; exit 4")
    until_sample(agent, lambda s: [x["name"] for x in s["tmux"]] == ["job", "train"])
    # Its program exits (remain-on-exit keeps the pane): seen at once, not after 60 s.
    # (Only the state is waited for: tmux 3.3a, started from a Python test, sometimes
    # leaves such a pane's program an unreaped zombie, and then no listing, cached or
    # not, shows its status; test_exited_pane_reports_state_and_exit_status covers it.)
    until_sample(agent, lambda s: s["tmux"][0]["state"] == "exited")
    # A live window killed: its program dies, seen at once.
    tmux_pod.tmux("new-window", "-t", "train", sleep + " 60")
    until_sample(agent, lambda s: s["tmux"][-1]["windows"] == 2)
    tmux_pod.tmux("kill-window", "-t", "train:1")
    until_sample(agent, lambda s: s["tmux"][-1]["windows"] == 1)
    # What moves no process (a rename; killing a session whose programs had all exited)
    # shows on a forced listing (the sample command), or after tmux_refresh_s.
    tmux_pod.tmux("kill-session", "-t", "job")
    tmux_pod.tmux("rename-session", "-t", "train", "train-2")
    agent.send({"cmd": "sample"})
    until_sample(agent, lambda s: [x["name"] for x in s["tmux"]] == ["train-2"])
    assert listings(tmux_pod) - quiet < 20, "still one listing per change, not per tick"


@pytest.mark.requires_tools("tmux")
def test_an_unchanged_listing_is_still_refreshed_now_and_then(tmux_pod, started):
    tmux_pod.tmux("new-session", "-d", "-s", "train", shutil.which("sleep") + " 60")
    agent = started({"interval": 0.1, "tmux_refresh_s": 0.3})
    agent.read_kind("hello")
    agent.read_kind("sample")
    tmux_pod.tmux("rename-session", "-t", "train", "renamed")
    until_sample(agent, lambda s: [x["name"] for x in s["tmux"]] == ["renamed"], timeout=3)


@pytest.mark.requires_tools("tmux")
def test_tmux_refresh_zero_lists_every_tick(tmux_pod, started):
    tmux_pod.tmux("new-session", "-d", "-s", "train", shutil.which("sleep") + " 60")
    agent = started({"interval": 0.1, "tmux_refresh_s": 0})
    agent.read_kind("hello")
    for _ in range(5):
        agent.read_kind("sample")
    assert listings(tmux_pod) >= 5
