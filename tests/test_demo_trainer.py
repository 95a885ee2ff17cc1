"""The demo's simulated trainer and GPUs: real frameworks' output, checkpoints, resume, load.

The expected bar lines are copied from the captured logs in tests/data/logs (each case
checks that its line really is in that file), so the trainer is held to what tqdm,
Transformers and Lightning print, and gpuctl's own progress parser reads its output.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import termios
import fcntl
import time
from pathlib import Path

import pytest

from backends.demo import trainer
from backends.demo.gpu_sim import MODELS, PodGpus, read_heartbeat
from backends.sim_nvidia_smi import render_query
from sessions.progress.tracker import parse_log

TRAINER = Path(trainer.__file__)
LOGS = Path(__file__).resolve().parent / "data" / "logs"


def run(cwd: Path, *args: str, env: dict | None = None, timeout: float = 60) -> str:
    done = subprocess.run([sys.executable, str(TRAINER), *args], cwd=cwd, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


FAST = ("--step-time", "0.001", "--checkpoint-mb", "0.01")


# ------------------------------------------------------------------ drawn like tqdm


@pytest.mark.parametrize("log, n, total, elapsed, rate, desc, unit, invert, postfix, expected", [
    ("hf_trainer.file.log", 2, 40, 0.2, 10.77, "", "it", True, "",
     "  5%|▌         | 2/40 [00:00<00:03, 10.77it/s]"),
    ("hf_trainer.file.log", 5, 40, 0.45, 11.07, "", "it", True, "",
     " 12%|█▎        | 5/40 [00:00<00:03, 11.07it/s]"),
    ("hf_trainer.file.log", 40, 40, 4.019, 9.95, "", "it", True, "",
     "100%|██████████| 40/40 [00:04<00:00,  9.95it/s]"),
    ("hf_resume.file.log", 21, 50, 0.16, 131.92, "", "it", True, "",
     " 42%|████▏     | 21/50 [00:00<00:00, 131.92it/s]"),
    ("tqdm_slow.file.log", 3, 6, 3.9, 1 / 1.3, "", "it", True, "",
     " 50%|█████     | 3/6 [00:03<00:03,  1.30s/it]"),
    ("hf_trainer.file.log", 400, 400, 0.01, 51895.25, "Map", " examples", True, "",
     "Map: 100%|██████████| 400/400 [00:00<00:00, 51895.25 examples/s]"),
    ("lightning_tqdm.file.log", 1, 20, 0.04, 22.78, "Epoch 0", "it", False, "train_loss=0.485",
     "Epoch 0:   5%|▌         | 1/20 [00:00<00:00, 22.78it/s, train_loss=0.485]"),
    ("lightning_tqdm.file.log", 0, None, 0.0, None, "Training", "it", False, "",
     "Training: |          | 0/? [00:00<?, ?it/s]"),
])
def test_bars_are_drawn_as_tqdm_draws_them(log, n, total, elapsed, rate, desc, unit, invert, postfix, expected):
    assert expected in (LOGS / log).read_text(encoding="utf-8")
    bar = trainer.Bar(io.StringIO(), total, desc=desc, unit=unit, invert_rate=invert)
    bar.n, bar.start, bar._fixed_rate, bar.postfix = n, 0.0, rate, postfix
    assert bar.line(now=elapsed) == expected


@pytest.mark.parametrize("value, text", [(0.485, "0.485"), (0.21, "0.210"), (0.0596, "0.0596"),
                                         (2.3, "2.300"), (12.5, "12.50"), (3e-05, "3e-5")])
def test_lightning_pads_postfix_numbers(value, text):
    assert trainer.lightning_number(value) == text
    if text in ("0.485", "0.210", "0.0596"):
        assert f"train_loss={text}" in (LOGS / "lightning_tqdm.file.log").read_text(encoding="utf-8")


def test_a_redraw_is_padded_to_the_previous_line_as_tqdm_pads_it():
    out = io.StringIO()
    bar = trainer.Bar(out, 20, desc="Epoch 0", invert_rate=False)
    bar.start, bar._fixed_rate = 0.0, 23.1
    bar.postfix = "train_loss=0.0596"
    bar.n = 19
    bar.draw(now=0.8)
    bar.postfix = "train_loss=0.210"
    bar.draw(now=0.8)
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first) and second.endswith("train_loss=0.210] ")


# ------------------------------------------------------- what gpuctl reads from it


@pytest.mark.parametrize("fmt, args, parsed", [
    ("hf", ("--total-steps", "45", "--checkpoint-every", "20"), "hf_trainer"),
    ("torchrun", ("--total-steps", "60", "--checkpoint-every", "25", "--nproc", "8"), "torchrun"),
    ("lightning", ("--total-steps", "60", "--steps-per-epoch", "20", "--checkpoint-every", "20"), "lightning"),
])
def test_each_format_is_read_by_gpuctls_parser(tmp_path, fmt, args, parsed):
    out = run(tmp_path, "--format", fmt, *args, *FAST)
    progress = parse_log(out)
    total = int(args[1])
    assert (progress.format, progress.step) == (parsed, total)
    assert fmt == "lightning" or progress.total == total
    losses = re.findall(r"(?:'loss': '|train loss |train_loss=)([0-9.]+)", out)
    assert len(losses) >= 3 and progress.loss == pytest.approx(float(losses[-1]))


@pytest.mark.parametrize("fmt, total", [("hf", 6000), ("torchrun", 5000), ("lightning", 10000)])
def test_the_loss_falls_over_a_run_and_is_the_same_on_every_run(fmt, total):
    curve = trainer.Curve(fmt, seed=1, total=total)
    windows = [sum(curve.loss(s) for s in range(start, start + 50)) / 50 for start in range(1, total, total // 10)]
    assert windows == sorted(windows, reverse=True)
    assert windows[-1] < 0.75 * windows[0]
    assert [trainer.Curve(fmt, 1, total).loss(s) for s in (1, 77)] == [curve.loss(1), curve.loss(77)]


def test_torchrun_lines_are_llmc_lines(tmp_path):
    out = run(tmp_path, "--format", "torchrun", "--total-steps", "3", *FAST)
    line = next(line for line in out.splitlines() if line.startswith("step "))
    shape = r"step    1/3 \| train loss \d+\.\d{6} \| norm \d\.\d{4} \| lr \d\.\d\de-\d\d \| \(\d+\.\d\d ms \| \d+ tok/s\)"
    assert re.fullmatch(shape, line), line


def test_bars_fill_the_terminal_when_stdout_is_one(tmp_path):
    """Under a pty (what tmux gives a pane) bars are `\\r` redraws as wide as the terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, str(TRAINER), "--format", "hf", "--total-steps", "12", *FAST],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the trainer exited and closed its end
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(10) == 0
    text = data.decode()
    assert "\r\n" in text  # the pty's newline translation, as in the *.tty.log captures
    bars = [b for b in re.split(r"[\r\n]", text) if "/12 [" in b]
    assert bars and all(len(b.rstrip()) == 100 for b in bars), bars[:3]


# ----------------------------------------------------------------------- checkpoints


def test_hf_checkpoints_are_trainer_folders_written_atomically(tmp_path):
    run(tmp_path, "--format", "hf", "--total-steps", "50", "--checkpoint-every", "10", "--keep-last", "2", *FAST)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint-40", "checkpoint-50"]  # save_total_limit=2, and no tmp-checkpoint-*
    folder = tmp_path / "checkpoints" / "checkpoint-50"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert (state["global_step"], state["max_steps"], state["save_steps"]) == (50, 50, 10)
    weights = (folder / "model.safetensors").read_bytes()
    header = json.loads(weights[8:8 + int.from_bytes(weights[:8], "little")])
    start, end = header["model.weight"]["data_offsets"]
    assert len(weights) == 8 + int.from_bytes(weights[:8], "little") + end - start


@pytest.mark.parametrize("fmt, args, expected", [
    ("torchrun", ("--checkpoint-every", "25", "--total-steps", "60"), ["step_25.pt", "step_50.pt"]),
    ("lightning", ("--checkpoint-every", "20", "--total-steps", "60", "--steps-per-epoch", "20",
                   "--keep-last", "0"), ["epoch=0-step=20.ckpt", "epoch=1-step=40.ckpt", "epoch=2-step=60.ckpt"]),
])
def test_single_file_checkpoints_are_named_as_the_frameworks_name_them(tmp_path, fmt, args, expected):
    run(tmp_path, "--format", fmt, *args, "--checkpoint-dir", "ck", *FAST)
    assert sorted(os.listdir(tmp_path / "ck"), key=lambda n: int(re.findall(r"\d+", n)[-1])) == expected
    header = trainer.read_single_file_header(str(tmp_path / "ck" / expected[-1]))
    assert (header["format"], header["global_step"]) == (fmt, int(re.findall(r"\d+", expected[-1])[-1]))


def test_checkpoint_bytes_depend_only_on_seed_and_step(tmp_path):
    digests = []
    for run_dir in ("a", "b"):
        (tmp_path / run_dir).mkdir()
        run(tmp_path / run_dir, "--format", "torchrun", "--total-steps", "25", "--checkpoint-every", "25", *FAST)
        digests.append(hashlib.sha256((tmp_path / run_dir / "checkpoints" / "step_25.pt").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


# --------------------------------------------------------------------------- resume


def test_torchrun_resume_continues_at_the_checkpoints_step(tmp_path):
    run(tmp_path, "--format", "torchrun", "--total-steps", "60", "--checkpoint-every", "25", *FAST)
    first = run(tmp_path, "--format", "torchrun", "--total-steps", "60", *FAST)
    again = run(tmp_path, "--format", "torchrun", "--total-steps", "60", "--resume", "checkpoints/step_50.pt", *FAST)
    assert "resuming from checkpoints/step_50.pt (step 50)" in again
    steps = re.findall(r"^step +(\d+)/60 \| train loss (\S+)", again, re.M)
    assert steps[0][0] == "51" and steps[-1][0] == "60"
    # The same numbers the uninterrupted run printed for those steps.
    assert dict(steps) == {k: v for k, v in re.findall(r"^step +(\d+)/60 \| train loss (\S+)", first, re.M)
                           if int(k) > 50}


def test_hf_resume_jumps_the_bar_to_the_next_step(tmp_path):
    run(tmp_path, "--format", "hf", "--total-steps", "40", "--checkpoint-every", "20", *FAST)
    out = run(tmp_path, "--format", "hf", "--total-steps", "40", "--resume", "checkpoints/checkpoint-20", *FAST)
    draws = re.findall(r"\| (\d+)/40 \[", out)
    assert draws[0] == "0" and draws[1] == "21"
    assert parse_log(out).step == 40


def test_lightning_resume_restores_and_starts_the_next_epoch(tmp_path):
    args = ("--format", "lightning", "--total-steps", "60", "--steps-per-epoch", "20", "--checkpoint-every", "20",
            "--keep-last", "0", "--checkpoint-dir", "ck", *FAST)
    run(tmp_path, *args)
    out = run(tmp_path, *args, "--resume", "ck/epoch=0-step=20.ckpt")
    assert f"Restoring states from the checkpoint path at {tmp_path / 'ck' / 'epoch=0-step=20.ckpt'}" in out
    epochs = re.findall(r"Epoch (\d+): ", out)
    assert epochs[0] == "1" and "0" not in epochs
    assert parse_log(out).step == 60


@pytest.mark.parametrize("resume, why", [("nowhere.pt", "No such file"), ("other.ckpt", "written by a lightning run")])
def test_a_checkpoint_it_cannot_resume_from_is_refused_in_words(tmp_path, resume, why):
    (tmp_path / "other.ckpt").write_bytes(trainer.single_file_checkpoint({"format": "lightning", "global_step": 5}, b""))
    done = subprocess.run([sys.executable, str(TRAINER), "--format", "torchrun", "--resume", resume, *FAST],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "cannot resume from" in done.stderr and why in done.stderr


# ---------------------------------------------------------- heartbeat and the GPUs


def test_the_heartbeat_drives_the_simulated_gpus(tmp_path):
    beat = tmp_path / "heartbeat"
    state = tmp_path / "gpus.json"
    gpus = PodGpus("pod", "h100-80gb", 8, state, beat)
    now = time.time()
    idle = gpus.tick(now)
    assert [g["utilization.gpu"] for g in idle["gpus"]] == [0] * 8
    proc = subprocess.Popen([sys.executable, str(TRAINER), "--format", "torchrun", "--total-steps", "100000",
                             "--step-time", "0.01", "--checkpoint-every", "0"], cwd=tmp_path,
                            env={**os.environ, "GPUCTL_DEMO_HEARTBEAT": str(beat)}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while read_heartbeat(beat, time.time()) != "train":
            assert time.monotonic() < deadline, "no heartbeat from the trainer"
            time.sleep(0.05)
        for i in range(1, 40):  # 20 simulated seconds of training
            busy = gpus.tick(now + i / 2)
        model = MODELS["h100-80gb"]
        for gpu in busy["gpus"]:
            assert gpu["utilization.gpu"] > 85 and gpu["memory.used"] > model.busy_memory_mib - 500
            assert gpu["temperature.gpu"] > model.idle_temp_c + 15 and gpu["power.draw"] > 400
        assert json.loads(state.read_text()) == busy
        # What nvidia-smi prints from it (the agent's query shape).
        row = render_query(busy, ["index", "name", "utilization.gpu"], header=False, units=False).splitlines()[0]
        assert row.startswith("0, NVIDIA H100 80GB HBM3, ")
    finally:
        proc.kill()
        proc.wait()
    assert read_heartbeat(beat, time.time()) is None  # its process is gone
    after = gpus.tick(now + 21)
    assert all(g["memory.used"] == MODELS["h100-80gb"].idle_memory_mib for g in after["gpus"])


def test_a_finished_run_removes_its_heartbeat(tmp_path):
    beat = tmp_path / "hb"
    run(tmp_path, "--format", "torchrun", "--total-steps", "5", *FAST, env={"GPUCTL_DEMO_HEARTBEAT": str(beat)})
    assert not beat.exists()
