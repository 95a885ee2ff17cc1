"""`gpuctl doctor --burn`: measured figures against the published ones, and a pod
without torch (or without a real one) told plainly, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sessions.health.burn import BURN_SCRIPT, WARN_FRACTION, judge_burn, parse_burn, published_for
from tests.test_doctor_cmd import doctor, needs_pod
from tests.support.pinning import trust

H100 = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(("name", "figures"), [
    (H100, (989.0, 3350.0)), ("NVIDIA H100 PCIe", (756.0, 2000.0)), ("NVIDIA A100-SXM4-80GB", (312.0, 2039.0)),
    ("NVIDIA A100-SXM4-40GB", (312.0, 1555.0)), ("NVIDIA GeForce RTX 4090", (165.2, 1008.0)),
    ("NVIDIA H200", (989.0, 4800.0)), ("NVIDIA A10G", (70.0, 600.0)),
])
def test_published_figures_by_model(name, figures):
    sheet = published_for(name)
    assert sheet is not None and (sheet.tflops_bf16, sheet.mem_gbps) == figures and sheet.source


def test_a_gpu_under_70_percent_of_its_datasheet_warns_and_offers_release():
    checks = judge_burn({"gpus": [
        {"index": 0, "name": H100, "tflops_bf16": 760.0, "mem_gbps": 2900.0},
        {"index": 1, "name": H100, "tflops_bf16": 0.6 * 989.0, "mem_gbps": 2900.0},
        {"index": 2, "name": "Some Future GPU", "tflops_bf16": 10.0, "mem_gbps": 100.0},
    ]})
    assert [(c.gpu, c.status) for c in checks] == [(0, "pass"), (1, "warn"), (2, "pass")]
    assert checks[0].reason.startswith("760 TFLOPS BF16, 2900 GB/s: 77 % and 87 % of the published 989 TFLOPS")
    assert checks[1].next_step.startswith("release this pod through its provider")
    assert checks[2].reason == "10 TFLOPS BF16, 100 GB/s (no published figures for Some Future GPU)"
    assert WARN_FRACTION == 0.70


def run_script(tmp_path: Path, pythonpath: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-S", "-c", BURN_SCRIPT, "0.2"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, **env})
    return parse_burn(done.stdout, done.stderr)


def test_without_torch_the_burn_says_so(tmp_path):
    doc = run_script(tmp_path, str(tmp_path))
    assert doc["error"].startswith("torch is not installed on the pod (ModuleNotFoundError")
    [check] = judge_burn(doc)
    assert (check.gpu, check.status) == (None, "warn") and check.reason.startswith("not measured: torch is not")


def test_a_torch_that_cannot_compute_is_a_plain_failure(tmp_path):
    """The demo's stand-in torch answers the pre-flight probe only: the burn says what failed."""
    lib = tmp_path / "lib" / "torch"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text((Path(__file__).parents[1] / "backends/demo/torch_standin.py").read_text())
    assert run_script(tmp_path, str(tmp_path / "lib")) == {"error": "torch sees no CUDA GPU"}  # no GPU state
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps({"gpus": [{"name": H100}]}))
    doc = run_script(tmp_path, str(tmp_path / "lib"), GPUCTL_SIM_GPU_STATE=str(state))
    assert doc["error"].startswith("the burn failed on the pod: AttributeError")
    assert parse_burn("", "sh: 1: python3: not found") == {"error": "python3 is not installed on the pod"}


@needs_pod
def test_doctor_burn_over_ssh_on_a_pod_without_torch(sshd, tmp_path, capsys, isolated_home):
    trust(sshd)
    code, out, err = doctor(tmp_path, sshd, capsys, "--json", "--burn", "1")
    burn = [c for c in json.loads(out)["checks"] if c["check"] == "burn"]
    assert [(c["gpu"], c["status"]) for c in burn] == [(None, "warn")], err
    assert burn[0]["reason"].startswith("not measured: torch is not installed on the pod")
    assert doctor(tmp_path, sshd, capsys, "--burn", "0")[0] == 2
