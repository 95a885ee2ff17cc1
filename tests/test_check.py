"""`gpuctl check POD`: the pre-flight parsers on captured text, then the whole command
against the real sshd test pod, a local pod and a shell-only (RunPod proxy) pod."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from backends import sim_nvidia_smi as sim
from sessions import preflight as pf
from sessions.preflight import FAIL, PASS, WARN, Section
from tests.support.pinning import trust
from tests.support.sshd import DEFAULT_GPUS
from tui.cli import main

# ------------------------------------------------------------------ captured text

# Plain `nvidia-smi` on an H100 pod (driver 550), first lines as the script keeps them.
H100_HEADER = """\
Tue Mar 12 10:15:42 2024       
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |
| N/A   34C    P0             68W /  700W |       4MiB /  81559MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+
"""  # noqa: W291 (the real tool pads the date line)

# The older layout (driver 470, CUDA 11.4).
A10G_HEADER_470 = """\
Mon Jun  5 08:01:12 2023
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.182.03   Driver Version: 470.182.03   CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
"""

H100_QUERY = "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n1, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n"

NVCC = """\
nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2023 NVIDIA Corporation
Built on Tue_Feb__7_19:32:13_PST_2023
Cuda compilation tools, release 12.1, V12.1.66
Build cuda_12.1.r12.1/compiler.32415258_0
"""

TORCH_MISSING = """\
Traceback (most recent call last):
  File "<string>", line 1, in <module>
ModuleNotFoundError: No module named 'torch'
"""

TORCH_NO_CUDA = (
    "/usr/local/lib/python3.10/dist-packages/torch/cuda/__init__.py:128: UserWarning: CUDA initialization: "
    "The NVIDIA driver on your system is too old (found version 11040). (Triggered internally at "
    "../c10/cuda/CUDAFunctions.cpp:108.)\n"
    "  return torch._C._cuda_getDeviceCount() > 0\n"
    + pf.TORCH_TAG + '{"version": "2.3.0+cu121", "cuda": "12.1", "available": false, "devices": 0}\n'
)

DF_WORKSPACE = """\
path /workspace
Filesystem     1024-blocks     Used Available Capacity Mounted on
overlay          104857600 73400320  31457280      71% /workspace
"""

DF_SHM_DOCKER = """\
Filesystem     1024-blocks  Used Available Capacity Mounted on
shm                  65536     0     65536       0% /dev/shm
"""


def torch_json(version="2.4.1+cu124", cuda="12.4", available=True, devices=2) -> str:
    return pf.TORCH_TAG + json.dumps({"version": version, "cuda": cuda, "available": available,
                                      "devices": devices}) + "\n"


def ok(text: str) -> Section:
    return Section(text, 0)


def h100s() -> list[pf.Gpu]:
    return pf.parse_gpu_query(H100_QUERY)


# ------------------------------------------------------------------ framing


def test_sections_are_read_back_with_exit_status_and_cut_off_ones_marked():
    out = ("junk before\n\n##gpuctl tmux\ntmux 3.4\n\n##gpuctl-rc 0\n"
           "\n##gpuctl torch\r\nTraceback\r\n\n##gpuctl-rc 1\r\n"
           "\n##gpuctl disk\npath /x\n")
    sections = pf.parse_sections(out)
    assert sections["tmux"] == Section("tmux 3.4", 0)
    assert sections["torch"] == Section("Traceback", 1)
    assert sections["disk"] == Section("path /x", None)
    assert pf.check_disk(sections["disk"], 20).status == WARN


def test_the_command_is_one_sh_script_with_quoted_arguments():
    pod = pf.PodConfig(name="p", host="h", workdir="~/runs/my run")
    command = pf.preflight_command(pod)
    assert command.startswith("sh -c '")
    assert " sh ~/'runs/my run' " in command, "the workdir keeps its ~ and is quoted"
    assert all(len(line) < 3000 for line in command.splitlines()), "typeable into a PTY shell"


# ------------------------------------------------------------------ gpus and driver


def test_gpu_query_rows_are_parsed_and_odd_cells_survive():
    rows = pf.parse_gpu_query("0, NVIDIA A100-SXM4-40GB, 40960, 535.129.03\n"
                              "1, Weird, Name, [N/A], 535.129.03\n\nNo devices were found\n")
    assert rows == [pf.Gpu("0", "NVIDIA A100-SXM4-40GB", 40960, "535.129.03"),
                    pf.Gpu("1", "Weird, Name", None, "535.129.03")]


def test_gpus_pass_and_memory_is_shown_in_gib():
    row, gpus = pf.check_gpus(ok(H100_QUERY))
    assert (row.status, row.detail) == (PASS, "2 × NVIDIA H100 80GB HBM3, 79.6 GiB each")
    assert len(gpus) == 2


def test_gpus_expected_count_and_memory():
    assert pf.check_gpus(ok(H100_QUERY), expect_gpus=2, expect_mem_gib=80)[0].status == PASS
    row, _ = pf.check_gpus(ok(H100_QUERY), expect_gpus=8)
    assert row.status == WARN and "expected 8 GPUs" in row.detail
    row, _ = pf.check_gpus(ok(H100_QUERY), expect_mem_gib=40)
    assert row.status == WARN and "expected 40 GiB per GPU (GPU 0, 1 differ)" in row.detail


@pytest.mark.parametrize(("section", "detail"), [
    (Section("nvidia-smi: command not found", 127), "nvidia-smi not found on PATH"),
    (Section(sim.DRIVER_FAILURE_MESSAGE + "\n", 9), "nvidia-smi: " + sim.DRIVER_FAILURE_MESSAGE),
    (Section("No devices were found", 6), "nvidia-smi: No devices were found"),
    (Section("", 124), "nvidia-smi did not answer within 20s (a hung driver?)"),
])
def test_gpus_fail_with_nvidia_smis_own_message(section, detail):
    row, gpus = pf.check_gpus(section)
    assert (row.status, row.detail, gpus) == (FAIL, detail, [])
    assert "--gpus all" in row.hint


@pytest.mark.parametrize(("header", "cuda"), [(H100_HEADER, "12.4"), (A10G_HEADER_470, "11.4"), ("", None)])
def test_cuda_version_from_the_real_header(header, cuda):
    assert pf.parse_cuda_version(header) == cuda


def test_cuda_version_from_the_simulated_table():
    assert pf.parse_cuda_version(sim.render_table(sim.DEFAULT_STATE)) == "12.4"


def test_driver_row():
    row, cuda = pf.check_driver(h100s(), ok(H100_HEADER), None)
    assert (row.status, row.detail, cuda) == (PASS, "550.54.15, CUDA 12.4", "12.4")
    row, cuda = pf.check_driver(h100s(), ok("no header here"), ok(NVCC))
    assert row.status == PASS and "CUDA 12.1 (nvcc" in row.detail and cuda is None
    row, cuda = pf.check_driver(h100s(), ok("no header here"), Section("nvcc: command not found", 127))
    assert row.status == WARN and "CUDA version unknown" in row.detail
    row, _ = pf.check_driver([], None, ok(NVCC))
    assert row.status == WARN and "(see gpus)" in row.detail


# ------------------------------------------------------------------ torch


def test_torch_pass():
    row = pf.check_torch(ok(torch_json()), h100s(), "12.4")
    assert (row.status, row.detail) == (PASS, "2.4.1+cu124, built for CUDA 12.4, CUDA available, 2 devices")


def test_torch_import_failure_shows_the_tracebacks_last_line():
    row = pf.check_torch(Section(TORCH_MISSING, 1), h100s(), "12.4")
    assert (row.status, row.detail) == (FAIL, "import torch failed: ModuleNotFoundError: No module named 'torch'")
    assert "pip install torch" in row.hint


def test_torch_without_python_or_in_time():
    assert pf.check_torch(Section("python3: command not found", 127), h100s(), None).detail == \
        "python3 not found on PATH"
    row = pf.check_torch(Section("", 124), h100s(), None)
    assert row.status == FAIL and "did not finish within 60s" in row.detail


def test_torch_without_cuda_while_gpus_are_present_fails_with_torchs_warning():
    a10g = pf.parse_gpu_query("0, NVIDIA A10G, 23028, 470.182.03")
    row = pf.check_torch(Section(TORCH_NO_CUDA, 0), a10g, "11.4")
    assert row.status == FAIL
    assert "torch.cuda.is_available() is False" in row.detail
    assert "return torch._C._cuda_getDeviceCount() > 0" in row.detail  # the last line before the JSON
    without_gpus = pf.check_torch(Section(TORCH_NO_CUDA, 0), [], None)
    assert without_gpus.status == WARN and "(see gpus)" in without_gpus.detail


def test_torch_cpu_build_on_a_gpu_pod_fails():
    row = pf.check_torch(ok(torch_json(version="2.4.1+cpu", cuda=None, available=False, devices=0)), h100s(), "12.4")
    assert row.status == FAIL and "CPU-only build" in row.detail


def test_torch_built_for_a_newer_cuda_than_the_driver_warns():
    row = pf.check_torch(ok(torch_json(version="2.6.0+cu128", cuda="12.8")), h100s(), "12.4")
    assert row.status == WARN and "newer than the driver's 12.4" in row.detail
    assert "CUDA 12.4 or older" in row.hint
    assert pf.check_torch(ok(torch_json(cuda="11.8")), h100s(), "12.4").status == PASS


def test_torch_seeing_fewer_gpus_than_nvidia_smi_warns():
    row = pf.check_torch(ok(torch_json(devices=1)), h100s(), "12.4")
    assert row.status == WARN and "CUDA_VISIBLE_DEVICES" in row.hint


# ------------------------------------------------------------------ disk, tmux, clock, limits


@pytest.mark.parametrize(("min_gb", "status"),
                         [(10, PASS), (15, PASS), (16, WARN), (29.9, WARN), (30.1, FAIL), (100, FAIL)])
def test_disk_thresholds(min_gb, status):
    row = pf.check_disk(ok(DF_WORKSPACE), min_gb)
    assert row.status == status
    assert row.detail.startswith("30.0 GiB free of 100.0 GiB at /workspace")
    assert (row.hint != "") == (status != PASS)


def test_tmux():
    assert pf.check_tmux(ok("tmux 3.2a")) == pf.CheckResult("tmux", PASS, "tmux 3.2a")
    missing = pf.check_tmux(Section("tmux: command not found", 127))
    assert missing.status == FAIL and "apt-get install -y tmux" in missing.hint


def test_clock_skew_takes_the_round_trip_out():
    # Sent at 100.0, the pod read 100.3 at its start and 105.3 at its end (5 s of
    # checks), the answer came at 105.6: a 0.6 s round trip, 0.3 s each way: no skew.
    skew, uncertainty = pf.clock_skew(100.0, 105.6, 100.3, 105.3)
    assert skew == pytest.approx(0.0) and uncertainty == pytest.approx(0.3)


@pytest.mark.parametrize(("offset", "status"), [(0.5, PASS), (-3.0, WARN), (45.0, FAIL)])
def test_clock_thresholds(offset, status):
    start, end = ok(f"{1000.05 + offset:.9f}"), ok(f"{1000.15 + offset:.9f}")
    row = pf.check_clock(start, end, Section("timedatectl: command not found", 127), 1000.0, 1000.2)
    assert row.status == status and f"pod {offset:+.2f}s" in row.detail


def test_clock_reads_busybox_dates_and_ntp_state():
    assert pf.parse_epoch("1718000000.%N") == (1718000000.0, 1.0)
    assert pf.parse_epoch("1718000000.123456789\n") == (1718000000.123456789, 0.0)
    assert pf.parse_ntp("no\n") is False
    assert pf.parse_ntp("               Local time: Tue 2024-03-12 10:15:42 UTC\n"
                        "System clock synchronized: yes\n              NTP service: active\n") is True
    assert pf.parse_ntp("      NTP synchronized: no\n") is False
    assert pf.parse_ntp("System has not been booted with systemd as init system (PID 1). Can't operate.") is None
    row = pf.check_clock(ok("1000.1"), ok("1000.1"), Section("no", 0), 1000.0, 1000.2)
    assert row.status == WARN and "NTP not synchronized" in row.detail


def test_ulimits():
    limits = pf.parse_ulimits("nofile 1024\nnofile_hard 1048576\nmemlock 64\n")
    row = pf.check_open_files(limits)
    assert row.status == WARN and "ulimit -n 1024" in row.detail and "up to 1048576" in row.hint
    row = pf.check_locked_memory(limits)
    assert row.status == WARN and "memlock=-1" in row.hint
    good = pf.parse_ulimits("nofile 1048576\nnofile_hard 1048576\nmemlock unlimited\n")
    assert pf.check_open_files(good).status == pf.check_locked_memory(good).status == PASS


def test_docker_default_shm_warns():
    row = pf.check_shm(ok(DF_SHM_DOCKER))
    assert (row.status, row.detail) == (WARN, "/dev/shm 0.1 GiB (0.1 GiB free); below 1.0 GiB")
    assert "--shm-size" in row.hint
    assert pf.check_shm(Section("/dev/shm: no such directory", 1)).status == WARN


def test_a_whole_captured_answer_is_judged_in_order():
    frame = "\n##gpuctl {}\n{}\n##gpuctl-rc {}\n".format
    out = "".join([
        frame("clock_start", "1710238542.100000000", 0),
        frame("gpu_query", H100_QUERY, 0),
        frame("gpu_header", H100_HEADER, 0),
        frame("nvcc", "nvcc: command not found", 127),
        frame("torch", torch_json(), 0),
        frame("disk", DF_WORKSPACE, 0),
        frame("tmux", "tmux 3.2a", 0),
        frame("ntp", "yes", 0),
        frame("ulimit", "nofile 1048576\nnofile_hard 1048576\nmemlock unlimited", 0),
        frame("shm", DF_SHM_DOCKER, 0),
        frame("clock_end", "1710238543.100000000", 0),
    ])
    results = pf.judge(pf.parse_sections(out), local_before=1710238542.0, local_after=1710238543.2,
                       min_free_gb=10)
    assert [(r.name, r.status) for r in results] == [
        ("gpus", PASS), ("driver", PASS), ("torch", PASS), ("disk", PASS), ("tmux", PASS), ("clock", PASS),
        ("open-files", PASS), ("locked-memory", PASS), ("shm", WARN)]
    assert pf.worst(results) == WARN


# ------------------------------------------------------------------ end to end

needs_pod = pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")


def write_config(tmp_path: Path, pods: list[dict]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": pods}, sort_keys=False))
    return path


def check(config: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def by_name(doc: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in doc}


def fake_torch(root: Path, *, version: str = "2.4.1+cu124", cuda: str | None = "12.4", devices: int = 2) -> Path:
    """A `torch` package with only what the probe reads, for a pod's PYTHONPATH."""
    package = root / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"from torch import cuda, version\n__version__ = {version!r}\n")
    (package / "version.py").write_text(f"cuda = {cuda!r}\n")
    (package / "cuda.py").write_text(textwrap.dedent(f"""\
        def is_available():
            return {cuda is not None!r}


        def device_count():
            return {devices if cuda else 0!r}
        """))
    return root


@needs_pod
def test_check_over_ssh_json(sshd, tmp_path, capsys, isolated_home):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("a100", workdir=str(tmp_path))])
    code, out, _ = check(config, capsys, "a100", "--json", "--expect-gpus", "2", "--expect-mem-gib", "80")
    doc = json.loads(out)
    assert [set(row) for row in doc] == [{"name", "status", "detail", "hint"}] * len(doc)
    rows = by_name(doc)
    assert list(rows)[:9] == ["gpus", "driver", "torch", "disk", "tmux", "clock", "open-files", "locked-memory", "shm"]
    # then the doctor's GPU health checks, one row each (sessions.health.checks.CHECKS)
    assert list(rows)[9:] == ["health-xid", "health-ecc", "health-retired-pages", "health-remapped-rows",
                              "health-clocks", "health-pcie", "health-persistence", "health-zombie-vram"]
    assert rows["health-ecc"] == {"name": "health-ecc", "status": PASS, "hint": "",
                                  "detail": "2 GPUs: not available on this GPU ([N/A])"}
    assert rows["gpus"]["status"] == PASS
    assert rows["gpus"]["detail"] == "2 × NVIDIA A100-SXM4-80GB, 80.0 GiB each"
    assert (rows["driver"]["status"], rows["driver"]["detail"]) == (PASS, "550.54.15, CUDA 12.4")
    assert rows["torch"]["status"] == FAIL  # the test pod's python3 has no torch
    assert rows["torch"]["detail"] == "import torch failed: ModuleNotFoundError: No module named 'torch'"
    assert rows["tmux"]["status"] == PASS and rows["tmux"]["detail"].startswith("tmux ")
    assert rows["clock"]["status"] == PASS
    assert rows["disk"]["detail"].endswith(f"at {tmp_path}")
    assert code == 1


@needs_pod
def test_check_over_ssh_table_disk_and_gpu_failures(sshd, tmp_path, capsys, isolated_home):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("a100", workdir=str(tmp_path))])
    code, out, _ = check(config, capsys, "a100", "--min-free-gb", "1000000", "--expect-gpus", "4")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "DETAIL"]
    assert "\x1b[" not in out, "no colour in a pipe"
    row = {line.split()[0]: line for line in lines[1:10]}
    assert row["disk"].split()[1] == FAIL and "below 1000000 GiB" in row["disk"]
    assert row["gpus"].split()[1] == WARN and "expected 4 GPUs" in row["gpus"]
    assert row["tmux"].split()[1] == PASS
    assert "hints:" in lines
    assert any(line.startswith("  disk: free space at") for line in lines)
    assert lines[-1].startswith("pod 'a100': 2 failed, ")  # disk and torch

    sshd.set_gpus(DEFAULT_GPUS, fail="driver")
    try:
        code, out, _ = check(config, capsys, "a100", "--json")
    finally:
        sshd.set_gpus(DEFAULT_GPUS)
    rows = by_name(json.loads(out))
    assert (rows["gpus"]["status"], rows["gpus"]["detail"]) == (FAIL, "nvidia-smi: " + sim.DRIVER_FAILURE_MESSAGE)
    assert rows["driver"]["status"] == WARN and code == 1


@needs_pod
def test_an_unreachable_pod_is_an_error(refused_port, tmp_path, capsys, isolated_home):
    config = write_config(tmp_path, [{"name": "gone", "host": "127.0.0.1", "port": refused_port}])
    code, out, err = check(config, capsys, "gone", "--json")
    assert (code, out) == (1, "")
    assert err.startswith("gpuctl: pod 'gone': ") and "refused" in err


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    config = write_config(tmp_path, [{"name": "here", "host": "local"}])
    assert check(config, capsys, "nope")[0] == 2
    code, _, err = check(config, capsys, "here", "--min-free-gb", "-1")
    assert code == 2 and "--min-free-gb must be a number >= 0" in err


@pytest.fixture
def gpu_pod_here(tmp_path, monkeypatch):
    """This machine as a GPU pod: the simulated nvidia-smi (two A100s) on PATH and a
    stand-in torch built for CUDA 12.4 on PYTHONPATH (returns its folder)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sim.install_wrapper(str(bin_dir))
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps({"gpus": [dict(g) for g in DEFAULT_GPUS]}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(sim.STATE_ENV, str(state))
    site = tmp_path / "site"
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


@pytest.mark.requires_tools("tmux")
def test_a_local_pod_passes_with_gpus_and_torch(gpu_pod_here, tmp_path, capsys):
    fake_torch(gpu_pod_here)
    config = write_config(tmp_path, [{"name": "here", "host": "local", "workdir": str(tmp_path)}])
    code, out, _ = check(config, capsys, "here", "--json", "--min-free-gb", "0")
    rows = by_name(json.loads(out))
    assert rows["gpus"]["status"] == rows["driver"]["status"] == PASS
    assert (rows["torch"]["status"], rows["torch"]["detail"]) == (
        PASS, "2.4.1+cu124, built for CUDA 12.4, CUDA available, 2 devices")
    assert rows["clock"]["status"] == rows["tmux"]["status"] == rows["disk"]["status"] == PASS
    # open-files, locked-memory and shm depend on this machine: at worst they warn.
    assert {r["status"] for r in rows.values()} <= {PASS, WARN}
    assert code == 0


@pytest.mark.requires_tools("tmux")
def test_a_local_pod_with_torch_newer_than_the_driver_warns_and_exits_0(gpu_pod_here, tmp_path, capsys):
    fake_torch(gpu_pod_here, version="2.7.0+cu128", cuda="12.8")
    config = write_config(tmp_path, [{"name": "here", "host": "local", "workdir": str(tmp_path)}])
    code, out, _ = check(config, capsys, "here", "--min-free-gb", "0")
    torch_line = next(line for line in out.splitlines() if line.startswith("torch "))
    assert torch_line.split()[1] == WARN and "newer than the driver's 12.4" in torch_line
    assert "torch: install a torch build for CUDA 12.4 or older" in out
    table = out.split("\n\n")[0].splitlines()[1:]
    assert len(table) == 9 + 8  # the pre-flight rows, then the doctor's (health-*)
    warnings = sum(line.split()[1] == WARN for line in table)
    plural = "s" if warnings != 1 else ""
    assert out.splitlines()[-1] == f"pod 'here': {warnings} warning{plural}, {len(table) - warnings} passed"
    assert code == 0


@pytest.mark.requires_tools("bash", "tmux")
async def test_a_proxied_pod_is_checked_through_its_shell(gpu_pod_here, tmp_path, monkeypatch):
    """RunPod's shell-only proxy: the same one script, typed into a PTY shell."""
    from sessions.config.loader import parse_config
    from sessions.link.pod_link import open_transport
    from tests.support.shell_only_sshd import ShellOnlyServer

    monkeypatch.setenv("HOME", str(tmp_path))
    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        config = parse_config(yaml.safe_dump({"pods": [{
            "name": "proxied", "host": "127.0.0.1", "port": server.port, "user": "pod1-64410abc",
            "host_key": "accept-new", "provider": {"type": "runpod", "id": "pod1", "ssh_proxy": True},
        }]}), tmp_path / "c.yaml")
        async with open_transport(config.pods[0], config.defaults) as runner:
            results = await pf.run_checks(runner, config.pods[0], min_free_gb=0, expect_gpus=1)
        assert server.exec_attempts == []
    rows = {r.name: r for r in results}
    # The proxy's shell gets PATH (so the simulated nvidia-smi) but not our state file
    # or PYTHONPATH: one default A100, and no torch.
    assert (rows["gpus"].status, rows["gpus"].detail) == (PASS, "1 × NVIDIA A100-SXM4-80GB, 80.0 GiB each")
    assert rows["driver"].detail == "550.54.15, CUDA 12.4"
    assert rows["torch"].status == FAIL and "No module named 'torch'" in rows["torch"].detail
    assert rows["tmux"].status == rows["clock"].status == rows["disk"].status == PASS
    assert rows["disk"].detail.endswith(f"at {home}")
    # The health reader's payload is typed as short here-document lines, so it gets through
    # the terminal too: the default simulated A100 reports every health field.
    assert (rows["health-ecc"].status, rows["health-ecc"].detail) == (PASS, "no uncorrected ECC errors")
    assert (rows["health-pcie"].status, rows["health-pcie"].detail) == (PASS, "PCIe x16 gen4, its maximum")


def test_status_is_coloured_on_a_terminal_only(monkeypatch):
    import sys

    from tests.support.tty import Tty
    from tui.commands import check_cmd

    results = [pf.CheckResult("gpus", PASS, "1 × GPU, memory [N/A]"),
               pf.CheckResult("shm", WARN, "/dev/shm 0.1 GiB", "docker run --shm-size=16g"),
               pf.CheckResult("tmux", FAIL, "tmux not found on PATH", "apt-get install -y tmux")]
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", Tty())
    check_cmd._render_rich(results, "p")
    out = sys.stdout.getvalue()
    assert "\x1b[32mpass" in out and "\x1b[33mwarn" in out and "\x1b[1;31mfail" in out
    assert "memory [N/A]" in out, "details are text, not rich markup"
    assert "shm: docker run --shm-size=16g" in out and "pod 'p': 1 failed, 1 warning, 1 passed" in out
    plain = check_cmd.render_plain(results, "p")
    assert "\x1b[" not in plain and plain.splitlines()[1].split()[:2] == ["gpus", PASS]
