"""Write the reconstructed logs: formats no framework here can print on a CPU box.

Why: DeepSpeed, nanoGPT, llm.c, torchtitan, Megatron and Keras 2 need GPUs, CUDA
builds or TensorFlow, none of which this machine has. Each sample below reproduces the
framework's own print statement (quoted above its writer, and in README.md) with
plausible, deterministic numbers, so that the parser is tested on the exact shape of
their lines. Captured logs (make_logs.py) are preferred wherever a framework runs here.

Rerun: python3 tests/data/logs/make_reconstructed.py   (stdlib only, deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _clock(t0: float, t: float) -> str:
    """`2024-05-01 12:00:03,250`-style time for a run started at t0 (seconds)."""
    s = t0 + t
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"2024-05-01 {int(h):02d}:{int(m):02d}:{int(sec):02d},{int(sec % 1 * 1000):03d}"


def nanogpt() -> str:
    """karpathy/nanoGPT train.py (shakespeare_char config, log_interval=10):
    print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%")
    print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    """
    rnd = random.Random(1)
    out = [
        "tokens per iteration will be: 16,384",
        "found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)",
        "Initializing a new model from scratch",
        "number of parameters: 10.65M",
        "num decayed parameter tensors: 26, with 10,740,096 parameters",
        "num non-decayed parameter tensors: 13, with 4,992 parameters",
        "using fused AdamW: True",
        "compiling the model... (takes a ~minute)",
    ]
    mfu = -1.0
    for it in range(0, 201, 10):
        if it % 100 == 0:
            out.append(f"step {it}: train loss {4.2 - it * 0.008:.4f}, val loss {4.21 - it * 0.0079:.4f}")
            if it:
                out.append("saving checkpoint to out-shakespeare-char")
        dt = 31402.2 if it == 0 else 251.0 + rnd.uniform(-4, 4)
        if it >= 50:
            mfu = 0.3811 if mfu < 0 else 0.9 * mfu + 0.1 * (0.38 + rnd.uniform(-0.01, 0.01))
        out.append(f"iter {it}: loss {4.19 - it * 0.008 + rnd.uniform(-0.02, 0.02):.4f}, time {dt:.2f}ms, mfu {mfu * 100:.2f}%")
    return "\n".join(out) + "\n"


def llmc() -> str:
    """karpathy/llm.c train_gpt2.py (torchrun-launched; `step N/TOTAL` lines):
    print0(f"step {step+1:4d}/{args.num_iterations} | train loss {lossf:.6f} | norm {norm:.4f}
           | lr {lr:.2e} | ({(t1-t0)*1000:.2f} ms | {tokens_per_second:.0f} tok/s)")
    """
    rnd = random.Random(2)
    out = ["total desired batch size: 524288", "=> calculated gradient accumulation steps: 8",
           "using regular AdamW", "val loss 10.985412"]
    for step in range(60):
        ms = 1010.0 + rnd.uniform(-15, 15) if step else 18210.5
        tps = 524288 / (ms / 1000)
        out.append(f"step {step + 1:4d}/200 | train loss {10.9 - step * 0.05:.6f} | norm {1.2 + rnd.random():.4f} "
                   f"| lr {6e-4 * min(1, (step + 1) / 20):.2e} | ({ms:.2f} ms | {tps:.0f} tok/s)")
        if step % 25 == 24:
            out.append(f"val loss {10.9 - step * 0.05 + 0.1:.6f}")
    return "\n".join(out) + "\n"


def torchtitan() -> str:
    """pytorch/torchtitan metrics.py, MetricsProcessor.log (via logging, with colours):
    logger.info(f"{color.red}step: {step:2}  {color.green}loss: {global_avg_loss:7.4f}  "
                f"{color.yellow}memory: {...:5.2f}GiB({...:.2f}%)  {color.blue}tps: {round(tps):,}  "
                f"{color.cyan}tflops: {tflops:,.2f}  {color.magenta}mfu: {mfu:.2f}%{color.reset}")
    with the `[titan] %(asctime)s - %(name)s - %(levelname)s - ` prefix; validation prints
    `validate step: ...` lines in between.
    """
    red, green, yellow, blue, cyan, magenta, reset = (f"\x1b[{c}m" for c in (31, 32, 33, 34, 36, 35, 39))
    rnd = random.Random(3)
    out = [f"[titan] {_clock(43200, 0)} - root - INFO - Starting job: Llama 3 8B training",
           f"[titan] {_clock(43200, 1)} - root - INFO - Training starts at step 1, with local batch size 1, "
           "global batch size 64, sequence length 8192, total steps 1000 (warmup 200)"]
    t = 5.0
    for step in range(1, 81):
        t += 6.2 + rnd.uniform(-0.1, 0.1)
        if step % 10 and step != 1:
            continue
        tps = 1321 + rnd.randint(-30, 30)
        out.append(f"[titan] {_clock(43200, t)} - root - INFO - {red}step: {step:2}  {green}loss: {8.0 - step * 0.04:7.4f}  "
                   f"{yellow}memory: 63.25GiB(79.96%)  {blue}tps: {tps:,}  {cyan}tflops: {tps * 0.35:,.2f}  "
                   f"{magenta}mfu: {tps * 0.035:.2f}%{reset}")
        if step % 40 == 0:
            out.append(f"[titan] {_clock(43200, t + 1)} - root - INFO - {yellow}validate step: {step:2}  "
                       f"{green}loss: {8.1 - step * 0.04:7.4f}  {blue}tps: {9012:,}{reset}")
    return "\n".join(out) + "\n"


def deepspeed_pipe() -> str:
    """microsoft/DeepSpeed runtime/pipe/engine.py, PipelineEngine.train_batch:
    print(f'steps: {self.global_steps} loss: {self.agg_train_loss:0.4f} '
          f'iter time (s): {iter_time:0.3f} samples/sec: {tput:0.3f}')
    """
    rnd = random.Random(4)
    out = ["[2024-05-01 10:00:00,001] [INFO] [real_accelerator.py:203:get_accelerator] Setting ds_accelerator to cuda (auto detect)",
           "[2024-05-01 10:00:02,120] [INFO] [engine.py:142:__init__] is_pipe_partitioned= False is_grad_partitioned= False",
           "[2024-05-01 10:00:02,305] [INFO] [config.py:1000:print] DeepSpeedEngine configuration:",
           "[2024-05-01 10:00:02,305] [INFO] [config.py:1004:print]   steps_per_print .............. 10",
           "[2024-05-01 10:00:02,305] [INFO] [config.py:1004:print]   train_batch_size ............. 256"]
    for step in range(10, 310, 10):
        it = 0.512 + rnd.uniform(-0.01, 0.01)
        out.append(f"steps: {step} loss: {6.9 - step * 0.01:0.4f} iter time (s): {it:0.3f} samples/sec: {256 / it:0.3f}")
    return "\n".join(out) + "\n"


def deepspeed_engine() -> str:
    """microsoft/DeepSpeed runtime/engine.py and utils/timer.py (ThroughputTimer), with the
    DeepSpeedExamples HelloDeepSpeed loss line (loguru):
    log_dist(f"step={self.global_steps}, skipped={self.skipped_steps}, lr={lr}, mom={mom}", ranks=[0])
    "epoch={}/micro_step={}/global_step={}, RunningAvgSamplesPerSec={}, CurrSamplesPerSec={}, "
    "MemAllocated={}GB, MaxMemAllocated={}GB"
    """
    rnd = random.Random(5)
    out = []
    t = 0.0
    for step in range(10, 160, 10):
        t += 2.15 + rnd.uniform(-0.03, 0.03)
        lr = 1e-4 * min(1.0, step / 50)
        c = _clock(36000, t)
        out.append(f"[{c}] [INFO] [logging.py:96:log_dist] [Rank 0] step={step}, skipped=0, lr=[{lr}], mom=[(0.9, 0.999)]")
        avg = 37.2 + rnd.uniform(-0.5, 0.5)
        out.append(f"[{c}] [INFO] [timer.py:260:stop] epoch=0/micro_step={step * 4}/global_step={step}, "
                   f"RunningAvgSamplesPerSec={avg}, CurrSamplesPerSec={avg + rnd.uniform(-1, 1)}, "
                   f"MemAllocated=4.32GB, MaxMemAllocated=38.49GB")
        out.append(f"{c.replace(',', '.')} | INFO     | __main__:log_dist:54 - [Rank 0] Loss: {10.9 - step * 0.02:.4f}")
    return "\n".join(out) + "\n"


def megatron() -> str:
    """NVIDIA Megatron-LM training.py training_log (as printed by Megatron-DeepSpeed):
    ' iteration {:8d}/{:8d} | consumed samples: {:12d} | elapsed time per iteration (ms): {:.1f}
     | learning rate: {:.3E} | global batch size: {:5d} | lm loss: {:.6E} | loss scale: {:.1f} | ...'
    """
    rnd = random.Random(6)
    out = []
    for it in range(1, 21):
        ms = 14287.5 + rnd.uniform(-200, 200)
        out.append(f" iteration {it * 10:8d}/  317892 | consumed samples: {it * 7680:12d} | consumed tokens: "
                   f"{it * 7680 * 4096:12d} | elapsed time per iteration (ms): {ms:.1f} | learning rate: "
                   f"{2.4e-4 * it / 20:.3E} | global batch size:   768 | lm loss: {6.2 - it * 0.01:.6E} | "
                   f"loss scale: 8192.0 | actual seqlen:  4096 | number of skipped iterations:   0 | "
                   f"number of nan iterations:   0 | samples per second: {768 / ms * 1000:.3f} | TFLOPs: 181.22 |")
    return "\n".join(out) + "\n"


def jsonl() -> str:
    """JSON-lines metrics, one `print(json.dumps(metrics), flush=True)` per logged step, as
    many custom loops (and logging-to-stdout callbacks) write them."""
    rnd = random.Random(7)
    out = ['{"event": "start", "run": "exp-17", "world_size": 8}']
    for step in range(0, 100, 5):
        out.append(json.dumps({"step": step, "total_steps": 1000, "loss": round(3.2 - step * 0.01, 4),
                               "lr": 3e-4, "tokens_per_s": round(98000 + rnd.uniform(-900, 900), 1),
                               "step_time": round(0.334 + rnd.uniform(-0.004, 0.004), 4),
                               "epoch": round(step / 400, 4)}))
        if step and step % 50 == 0:
            out.append(json.dumps({"step": step, "eval_loss": 3.0, "eval_accuracy": 0.41}))
    return "\n".join(out) + "\n"


def keras2() -> str:
    """tf.keras 2.x keras/utils/generic_utils.py Progbar.update (verbose=1, dynamic display):
    message += "\\b" * prev_total_width + "\\r"; bar = ("%" + str(numdigits) + "d/%d [") % (current,
    target) + "=" * (prog_width - 1) + (">" | "=") + "." * (width - prog_width) + "]";
    during: " - ETA: %ds"; finalize: " - %.0fs" + " %.0fms/step"; then " - %s: %.4f" per metric.
    """
    out: list[str] = []
    rnd = random.Random(8)
    for epoch in range(1, 4):
        out.append(f"Epoch {epoch}/3\n")
        prev = 0
        for cur in range(1, 21):
            w = int(30 * cur / 20)
            bar = f"{cur:2d}/20 [" + "=" * (w - 1) + (">" if cur < 20 else "=") + "." * (30 - w) + "]"
            loss = 0.9 - epoch * 0.05 - cur * 0.002 + rnd.uniform(-0.01, 0.01)
            if cur < 20:
                info = f" - ETA: {int((20 - cur) * 0.06)}s - loss: {loss:.4f} - accuracy: 0.5{cur:03d}"
            else:
                info = f" - 1s 62ms/step - loss: {loss:.4f} - accuracy: 0.5200 - val_loss: 0.7745 - val_accuracy: 0.5156\n"
            out.append("\b" * prev + "\r" + bar + info)
            prev = len(bar + info)
    return "".join(out)


FILES = {
    "nanogpt.log": nanogpt, "llmc.log": llmc, "torchtitan.log": torchtitan,
    "deepspeed_pipe.log": deepspeed_pipe, "deepspeed_engine.log": deepspeed_engine,
    "megatron.log": megatron, "jsonl.log": jsonl, "keras2.log": keras2,
}

if __name__ == "__main__":
    for name, make in FILES.items():
        (HERE / name).write_text(make(), encoding="utf-8", newline="")
        print(name)
