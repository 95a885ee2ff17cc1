"""`gpuctl doctor POD --burn SECONDS`: is each GPU as fast as its model should be?

A GPU can pass every health field and still be slow (a power cap, a bad heatsink, a
down-clocked board, a neighbour's job on a shared host). The burn measures two
figures with the pod's own torch, each GPU in turn, half the time each:

* dense BF16 matmul throughput (8192 x 8192, ``a @ b``), in TFLOPS;
* memory bandwidth of a 1 GiB device-to-device copy (read + write counted), in GB/s;

and compares them with the model's published peak (`PUBLISHED`). Under `WARN_FRACTION`
of either is a warn whose next step is to release the pod through its provider. A
healthy card reaches roughly 70-90 % of the datasheet's matmul peak and 80-90 % of its
bandwidth, so the threshold is the issue's 70 %. Nothing is installed: without torch
(or without CUDA) the check says so.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from sessions.health.checks import HealthCheck
from sessions.health.xid import PASS, WARN

WARN_FRACTION = 0.70


@dataclass(frozen=True)
class Published:
    """A model's datasheet peak: dense BF16 tensor TFLOPS (no sparsity) and memory GB/s."""

    tflops_bf16: float
    mem_gbps: float
    source: str


# Keys are matched against the name nvidia-smi/torch gives, most specific first.
A100_SHEET = "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100/)"
H100_SHEET = "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/)"
PUBLISHED: tuple[tuple[str, Published], ...] = (
    ("H100 NVL", Published(835.0, 3900.0, H100_SHEET)),
    ("H100 PCIe", Published(756.0, 2000.0, H100_SHEET)),
    ("H100", Published(989.0, 3350.0, H100_SHEET + ", SXM5")),
    ("H200", Published(989.0, 4800.0, "NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200/), SXM")),
    ("A100-SXM4-80GB", Published(312.0, 2039.0, A100_SHEET + ", SXM 80GB")),
    ("A100-SXM4-40GB", Published(312.0, 1555.0, A100_SHEET + ", 40GB")),
    ("A100 80GB PCIe", Published(312.0, 1935.0, A100_SHEET + ", PCIe 80GB")),
    ("A100-PCIE-40GB", Published(312.0, 1555.0, A100_SHEET + ", 40GB")),
    ("L40S", Published(362.0, 864.0, "NVIDIA L40S datasheet (nvidia.com/en-us/data-center/l40s/)")),
    ("RTX 4090", Published(165.2, 1008.0, "NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090, "
                                          "BF16 with FP32 accumulate)")),
    ("A10G", Published(70.0, 600.0, "AWS EC2 G5 instances (A10G tensor performance)")),
    ("A10", Published(125.0, 600.0, "NVIDIA A10 datasheet (nvidia.com/en-us/data-center/products/a10-gpu/)")),
)

# Runs on the pod with its own python and torch; prints one JSON line.
BURN_SCRIPT = r"""
import json, sys, time
def out(doc):
    print("GPUCTL_BURN " + json.dumps(doc)); sys.exit(0)
try:
    import torch
except Exception as exc:
    out({"error": "torch is not installed on the pod (%s: %s)" % (type(exc).__name__, exc)})
try:
    if not torch.cuda.is_available():
        out({"error": "torch sees no CUDA GPU"})
    seconds = float(sys.argv[1]); gpus = []
    for i in range(torch.cuda.device_count()):
        dev = torch.device("cuda", i); n = 8192
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16); b = torch.randn_like(a)
        a @ b; torch.cuda.synchronize(dev); done = 0; start = time.time()
        while time.time() - start < seconds / 2:
            for _ in range(10):
                a @ b
            torch.cuda.synchronize(dev); done += 10
        tflops = 2.0 * n ** 3 * done / (time.time() - start) / 1e12
        x = torch.empty(1 << 29, device=dev, dtype=torch.bfloat16); y = torch.empty_like(x)
        y.copy_(x); torch.cuda.synchronize(dev); done = 0; start = time.time()
        while time.time() - start < seconds / 2:
            for _ in range(10):
                y.copy_(x)
            torch.cuda.synchronize(dev); done += 10
        gbps = 2.0 * x.numel() * x.element_size() * done / (time.time() - start) / 1e9
        gpus.append({"index": i, "name": torch.cuda.get_device_name(i), "tflops_bf16": tflops, "mem_gbps": gbps})
        del a, b, x, y; torch.cuda.empty_cache()
    out({"gpus": gpus})
except SystemExit:
    raise
except Exception as exc:
    out({"error": "the burn failed on the pod: %s: %s" % (type(exc).__name__, exc)})
"""
TAG = "GPUCTL_BURN "


def burn_command(seconds: float, python: str = "python3") -> str:
    """The one command, its parts shell-quoted: `python3 -c SCRIPT SECONDS`."""
    return " ".join(shlex.quote(part) for part in (python, "-c", BURN_SCRIPT, f"{seconds:g}"))


def parse_burn(stdout: str, stderr: str = "") -> dict:
    """The script's JSON, or ``{"error": ...}`` in plain words when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(TAG):
            try:
                doc = json.loads(line[len(TAG):])
            except ValueError:
                break
            if isinstance(doc, dict):
                return doc
    text = (stderr or stdout).strip().splitlines()
    if text and "not found" in text[-1]:
        return {"error": "python3 is not installed on the pod"}
    return {"error": "the burn printed no result" + (f": {text[-1].strip()}" if text else "")}


def published_for(name: str | None) -> Published | None:
    """The datasheet figures for a GPU name (`NVIDIA H100 80GB HBM3`), or None."""
    if not name:
        return None
    return next((figures for key, figures in PUBLISHED if key.lower() in name.lower()), None)


def judge_burn(doc: dict) -> list[HealthCheck]:
    """One `burn` check per GPU: pass, or warn under `WARN_FRACTION` of the datasheet."""
    if doc.get("error"):
        return [HealthCheck("burn", None, WARN, f"not measured: {doc['error']}",
                            "install torch with CUDA on the pod to measure, or skip --burn")]
    out = []
    for gpu in doc.get("gpus") or ():
        tflops, gbps, name = float(gpu.get("tflops_bf16") or 0), float(gpu.get("mem_gbps") or 0), gpu.get("name")
        measured = f"{tflops:.0f} TFLOPS BF16, {gbps:.0f} GB/s"
        sheet = published_for(name)
        if sheet is None:
            out.append(HealthCheck("burn", gpu.get("index"), PASS, f"{measured} (no published figures for {name})"))
            continue
        shares = (tflops / sheet.tflops_bf16, gbps / sheet.mem_gbps)
        said = (f"{measured}: {100 * shares[0]:.0f} % and {100 * shares[1]:.0f} % of the published "
                f"{sheet.tflops_bf16:g} TFLOPS and {sheet.mem_gbps:g} GB/s ({sheet.source})")
        if min(shares) < WARN_FRACTION:
            out.append(HealthCheck("burn", gpu.get("index"), WARN, said,
                                   "release this pod through its provider (gpuctl teardown POD) and take another"))
        else:
            out.append(HealthCheck("burn", gpu.get("index"), PASS, said))
    return out
