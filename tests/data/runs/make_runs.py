"""A matrix of real (tiny) training runs, captured with their ground truth.

Why: the parser must be right on what frameworks print under the options people set,
not on a few hand-picked captures. Each scenario below is a real run of a real framework
(CPU, tiny model, synthetic data) with one set of options, and it records its ground
truth from INSIDE the training script (a callback or the loop itself writes the true
step, total, logged loss and wall time of every step to `NAME.truth.json`); nothing of
the truth is parsed from the output. `tests/test_progress_runs.py` compares `parse_log`
against that truth for every capture; `bench/eta_replay.py` replays the terminal
captures at their arrival times and measures the ETA against the true end.

Every scenario is captured twice:

* `NAME.tty.log` through a pseudo-terminal of the scenario's width (what tmux
  `pipe-pane` records), with `NAME.tty.times.json`: when each chunk arrived
  (`[[seconds since start, end offset], ...]`), so a replay feeds it as the agent would;
* `NAME.file.log`: stdout and stderr redirected to one file, as `python train.py >
  log 2>&1` does (stdout block-buffered, so prints and bars interleave as they really do).

How to rerun (about 10 minutes on 2 cores; no GPU, no network once installed):

    python3 -m venv /tmp/runs-venv
    /tmp/runs-venv/bin/pip install torch==2.13.0          # the CPU wheel, first
    /tmp/runs-venv/bin/pip install tqdm transformers accelerate lightning trl rich datasets keras
    DS_BUILD_OPS=0 /tmp/runs-venv/bin/pip install deepspeed     # ops built just in time (CPU)
    HF_HUB_OFFLINE=1 /tmp/runs-venv/bin/python tests/data/runs/make_runs.py [SCENARIO ...]

Runs are short by design (a few hundred steps at most): each step sleeps a little so the
pace resembles a real model's, and checkpoint saves and evaluations make the recurring
pauses an ETA has to count.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ ground truth

class Truth:
    """What really happened, written from inside the run at exit.

    `steps` holds `[step, seconds since the capture started, loss or None]` for every
    completed optimizer step; `logged_loss` is the last loss the framework printed (its
    own value, rounded as it prints it where that is known).
    """

    def __init__(self) -> None:
        self.t0 = float(os.environ.get("RUNS_T0", time.time()))
        self.path = os.environ.get("RUNS_TRUTH")
        self.total: int | None = None
        self.steps: list[list] = []
        self.logged_loss: float | None = None
        self.extra: dict = {}
        atexit.register(self.write)

    def step(self, n: int, loss: float | None = None) -> None:
        self.steps.append([int(n), round(time.time() - self.t0, 4), loss])

    def write(self) -> None:
        if not self.path:
            return
        doc = {"total": self.total, "final_step": self.steps[-1][0] if self.steps else None,
               "logged_loss": self.logged_loss, "steps": self.steps, **self.extra}
        Path(self.path).write_text(json.dumps(doc))


TRUTH: Truth | None = None


def truth() -> Truth:
    global TRUTH
    if TRUTH is None:
        TRUTH = Truth()
    return TRUTH


# ------------------------------------------------------------------ HF Trainer

def _tiny_gpt2(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=128, n_positions=32, n_embd=32, n_layer=2, n_head=2))


def _lm_dataset(n: int, seed: int = 0):
    import random

    from datasets import Dataset

    rnd = random.Random(seed)
    raw = Dataset.from_dict({"text": [" ".join(str(rnd.randrange(100)) for _ in range(16)) for _ in range(n)]})

    def tok(batch):
        ids = [[int(w) + 2 for w in t.split()] for t in batch["text"]]
        return {"input_ids": ids, "labels": ids}

    return raw.map(tok, batched=True, remove_columns=["text"])


def _hf_truth_callback(step_sleep: float, save_sleep: float = 0.0):
    from transformers import TrainerCallback

    tr = truth()

    class Record(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            time.sleep(save_sleep)  # a real model's checkpoint takes a while to write

        def on_train_begin(self, args, state, control, **kw):
            tr.total = state.max_steps

        def on_step_end(self, args, state, control, **kw):
            time.sleep(step_sleep)  # a real model's pace, not a tiny one's
            tr.step(state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and state.is_world_process_zero:
                tr.logged_loss = float(logs["loss"])

    return Record()


def _hf_train(*, max_steps: int = -1, epochs: float = 1.0, n_train: int = 400, step_sleep: float = 0.03,
              save_sleep: float = 0.0, resume: bool = False, **overrides) -> None:
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as out:
        base = dict(output_dir=out, max_steps=max_steps, num_train_epochs=epochs,
                    per_device_train_batch_size=4, per_device_eval_batch_size=8,
                    logging_steps=10, save_strategy="no", eval_strategy="no", learning_rate=5e-4,
                    report_to="none", use_cpu=True, dataloader_num_workers=0)
        if resume:
            _hf_first_leg(out, base, overrides)
        base.update(overrides)
        trainer = Trainer(model=_tiny_gpt2(), args=TrainingArguments(**base),
                          train_dataset=_lm_dataset(n_train), eval_dataset=_lm_dataset(64, seed=1),
                          callbacks=[_hf_truth_callback(step_sleep, save_sleep)])
        ckpt = None
        if resume:
            ckpt = sorted(Path(out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
            print("=== resuming ===", flush=True)
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)


def _hf_first_leg(out: str, base: dict, overrides: dict) -> None:
    """The run that crashed: its output is not part of the resumed session's log."""
    from transformers import Trainer, TrainingArguments

    args = dict(base, **overrides)
    first = dict(args, max_steps=args["max_steps"] * 2 // 5, save_strategy="steps",
                 save_steps=args["max_steps"] * 2 // 5, eval_strategy="no", disable_tqdm=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1), os.dup2(devnull, 2)
    try:
        Trainer(model=_tiny_gpt2(), args=TrainingArguments(**first),
                train_dataset=_lm_dataset(400)).train()
    finally:
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def run_hf_default() -> None:
    """The Trainer as most people run it: a bar, loss dicts every 10 steps, an
    evaluation and a checkpoint save every 40 steps (the recurring pauses)."""
    _hf_train(max_steps=160, eval_strategy="steps", eval_steps=40, save_strategy="steps", save_steps=40)


def run_hf_ckpt40() -> None:
    """The issue's case at a smaller scale: a checkpoint saved every 40 steps through a
    long run (400 steps, each save a second of writing), and nothing else: the recurring
    pause an ETA must count without swinging (bench/eta_replay.py)."""
    _hf_train(max_steps=400, n_train=1600, logging_steps=20, save_strategy="steps", save_steps=40,
              step_sleep=0.1, save_sleep=1.0)


def run_hf_notqdm() -> None:
    """`disable_tqdm=True`: no bar at all, only the metrics dicts."""
    _hf_train(max_steps=120, disable_tqdm=True, logging_steps=5, eval_strategy="steps", eval_steps=40)


def run_hf_tokens() -> None:
    """`include_num_input_tokens_seen`, gradient accumulation and epochs (no max_steps):
    extra keys in every dict, steps that are optimizer steps, not batches."""
    _hf_train(epochs=2, n_train=320, include_num_input_tokens_seen=True, gradient_accumulation_steps=2,
              logging_steps=5, step_sleep=0.05)


def run_hf_epoch_eval() -> None:
    """Evaluation and logging once per epoch, three epochs, with logging_steps=1 off."""
    _hf_train(epochs=3, n_train=240, eval_strategy="epoch", logging_strategy="epoch", save_strategy="epoch")


def run_hf_logsteps1() -> None:
    """`logging_steps=1`: a dict after every step, between every redraw of the bar."""
    _hf_train(max_steps=80, logging_steps=1)


def run_hf_resume() -> None:
    """Resumed from a checkpoint at 40 % of 150 steps: the bar jumps, its it/s lies."""
    _hf_train(max_steps=150, resume=True, step_sleep=0.05)


def run_trl_sft() -> None:
    """TRL's SFTTrainer: its dicts carry entropy, num_tokens, mean_token_accuracy."""
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    vocab = {str(i): i + 3 for i in range(100)}
    vocab.update({"[PAD]": 0, "[UNK]": 1, "[EOS]": 2})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    import random

    rnd = random.Random(0)
    data = Dataset.from_dict({"text": [" ".join(str(rnd.randrange(100)) for _ in range(12)) for _ in range(320)]})
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(output_dir=out, max_steps=100, per_device_train_batch_size=4, logging_steps=10,
                        save_strategy="no", report_to="none", use_cpu=True, max_length=16,
                        learning_rate=5e-4, dataset_num_proc=None)
        trainer = SFTTrainer(model=_tiny_gpt2(), args=cfg, train_dataset=data, processing_class=tok,
                             callbacks=[_hf_truth_callback(0.03)])
        trainer.train()


# ------------------------------------------------------------------ accelerate, tqdm, nanoGPT

def _toy():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    x = torch.randn(512, 16)
    return model, x, x[:, :1] * 0.5


def run_accelerate_tqdm() -> None:
    """An accelerate loop: tqdm on the main process, `accelerator.print` every 20 steps,
    a `save_state` pause every 50."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    acc = Accelerator(cpu=True)
    model, x, y = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    model, opt, loader = acc.prepare(model, opt, loader)
    tr = truth()
    epochs = 3
    tr.total = epochs * len(loader)
    bar = tqdm(range(tr.total), disable=not acc.is_local_main_process, desc="Training")
    step = 0
    with tempfile.TemporaryDirectory() as out:
        for epoch in range(epochs):
            for xb, yb in loader:
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
                time.sleep(0.03)
                step += 1
                bar.update(1)
                tr.step(step, loss.item())
                if step % 20 == 0:
                    acc.print(f"epoch {epoch} step {step}: loss {loss.item():.4f}")
                    tr.logged_loss = round(loss.item(), 4)
                if step % 50 == 0:
                    acc.save_state(out)
                    time.sleep(0.4)  # a checkpoint's write time


def run_accelerate_ckpt() -> None:
    """An accelerate loop over many epochs with `save_state` and a short evaluation
    every 30 steps (a second's pause each): pauses that recur through the whole run."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    acc = Accelerator(cpu=True)
    model, x, y = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:320], y[:320]), batch_size=8, shuffle=True)
    model, opt, loader = acc.prepare(model, opt, loader)
    tr = truth()
    epochs = 8
    tr.total = epochs * len(loader)
    bar = tqdm(total=tr.total, disable=not acc.is_local_main_process, desc="Training")
    step = 0
    with tempfile.TemporaryDirectory() as out:
        for _epoch in range(epochs):
            for xb, yb in loader:
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
                time.sleep(0.08)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                tr.step(step, loss.item())
                tr.logged_loss = round(loss.item(), 4)
                if step % 30 == 0 and step < tr.total:
                    with torch.no_grad():
                        model(x[320:])
                    acc.save_state(out)
                    time.sleep(1.0)  # evaluation and the checkpoint's write time
    bar.close()


def run_tqdm_postfix() -> None:
    """A loop with `set_postfix(loss=..., lr=...)` given as numbers, and a one-off
    `Loading data` bar before it."""
    from tqdm import tqdm

    tr = truth()
    for _ in tqdm(range(30), desc="Loading data"):
        time.sleep(0.005)
    tr.total = 150
    bar = tqdm(range(1, 151), desc="train", dynamic_ncols=True)
    for i in bar:
        time.sleep(0.03 if i % 50 else 0.6)
        loss = 3.0 / (1 + i * 0.05)
        bar.set_postfix(loss=loss, lr=3e-4)
        tr.step(i, loss)
        tr.logged_loss = loss


def run_tqdm_nested() -> None:
    """An outer `Epoch` bar over an inner batch bar (`leave=False`, position=1) that
    carries the loss: the run's step is epochs done x batches + batch."""
    from tqdm import tqdm, trange

    tr = truth()
    epochs, batches = 3, 50
    tr.total = epochs * batches
    for e in trange(epochs, desc="Epoch", position=0):
        inner = tqdm(range(batches), desc="Iteration", position=1, leave=False)
        for b in inner:
            time.sleep(0.03)
            loss = 2.0 / (1 + (e * batches + b) * 0.03)
            inner.set_postfix({"loss": f"{loss:.4f}"})
            tr.step(e * batches + b + 1, loss)
            tr.logged_loss = round(loss, 4)


def run_tqdm_inner_postfix() -> None:
    """The training bar's postfix has the loss; each step also runs a short nested
    `rollout` bar (position 1, `leave=False`) whose postfix has its own `loss` and
    `reward`: those must never be taken for the training loss, nor its step."""
    from tqdm import tqdm

    tr = truth()
    tr.total = 60
    bar = tqdm(total=60, desc="ppo", position=0)
    for i in range(1, 61):
        roll = tqdm(range(6), desc="rollout", position=1, leave=False)
        for k in roll:
            time.sleep(0.01)
            roll.set_postfix(loss=9.0 + k, reward=0.5)
        roll.close()
        loss = 1.5 - i * 0.01
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)
        tr.step(i, loss)
        tr.logged_loss = round(loss, 3)
    bar.close()


def run_nanogpt() -> None:
    """nanoGPT's print statements (0-based `iter`, run through `max_iters` inclusive as
    nanoGPT's loop does), with an evaluation every 50 iters."""
    tr = truth()
    max_iters = 200
    tr.total = None
    t = time.time()
    for it in range(max_iters + 1):
        if it % 50 == 0 and it:
            time.sleep(0.5)
            print(f"step {it}: train loss {3.0 - it * 0.005:.4f}, val loss {3.1 - it * 0.005:.4f}")
        time.sleep(0.03)
        loss = 3.0 - it * 0.005
        t1 = time.time()
        dt, t = t1 - t, t1
        tr.step(it + 1, loss)
        if it % 10 == 0:
            print(f"iter {it}: loss {loss:.4f}, time {dt * 1000:.2f}ms, mfu {-100.0 if it < 5 else 30.0:.2f}%")
            tr.logged_loss = round(loss, 4)
    sys.stdout.flush()


# ------------------------------------------------------------------ Lightning

def _lightning_fit(*, rich: bool, epochs: int = 3, log_every: int = 50, max_steps: int = -1, val: bool = True,
                   step_sleep: float = 0.03, val_sleep: float = 0.01) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback, RichProgressBar, TQDMProgressBar
    from torch.utils.data import DataLoader, TensorDataset

    tr = truth()

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

        def training_step(self, batch, _):
            time.sleep(step_sleep)
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):
            time.sleep(val_sleep)
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Record(Callback):
        def on_train_start(self, trainer, module):
            tr.total = trainer.estimated_stepping_batches

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            tr.step(trainer.global_step, float(outputs["loss"]))

        def on_train_end(self, trainer, module):
            v = trainer.progress_bar_metrics.get("train_loss")
            tr.logged_loss = float(v) if v is not None else None

    torch.manual_seed(0)
    x = torch.randn(640, 16)
    y = x[:, :1] * 0.5
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    valid = DataLoader(TensorDataset(x[:160], y[:160]), batch_size=16) if val else None
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(max_epochs=epochs, max_steps=max_steps, accelerator="cpu", devices=1,
                            default_root_dir=out, log_every_n_steps=log_every, enable_model_summary=False,
                            callbacks=[RichProgressBar() if rich else TQDMProgressBar(), Record()],
                            logger=False, enable_checkpointing=False)
        trainer.fit(Tiny(), train, valid)


def run_lightning_tqdm_narrow() -> None:
    """Lightning's tqdm bar in an 80-column terminal, 3 epochs with validation."""
    _lightning_fit(rich=False)


def run_lightning_tqdm_wide() -> None:
    """The same at 200 columns, log_every_n_steps=5, no validation, 2 epochs."""
    _lightning_fit(rich=False, epochs=2, log_every=5, val=False)


def run_lightning_rich() -> None:
    """Lightning's RichProgressBar, 3 epochs with validation."""
    _lightning_fit(rich=True)


def run_lightning_val_epochs() -> None:
    """RichProgressBar over 8 epochs, a validation pass (about a second) at every epoch
    end: the epoch-end pause recurs through the run."""
    _lightning_fit(rich=True, epochs=8, step_sleep=0.08, val_sleep=0.1)


def run_lightning_maxsteps() -> None:
    """`max_steps=100` cuts the third epoch short: the total is max_steps."""
    _lightning_fit(rich=False, epochs=5, max_steps=100)


# ------------------------------------------------------------------ Keras

def run_keras() -> None:
    """Keras 3 `fit` (torch backend), 3 epochs with a validation split."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np

    tr = truth()

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.done = 0
            tr.total = self.params["epochs"] * self.params["steps"]

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.03)
            self.done += 1
            tr.step(self.done, float(logs["loss"]))
            tr.logged_loss = float(logs["loss"])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1280, 16)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, callbacks=[Record()], verbose=1)


# ------------------------------------------------------------------ torchrun, 2 ranks

DDP_SCRIPT = r'''
import json, os, time
from pathlib import Path
import torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
t0 = float(os.environ["RUNS_T0"])
# RUNS_DDP_PLAN (make_runs.py sets it per scenario): seconds each rank sleeps per step
# (a real model's pace), a rank that turns slow part way through, the time budget and
# the noise in the target (so each rank's loss is its own rather than all 0.0000)
plan = json.loads(os.environ.get("RUNS_DDP_PLAN") or "{}")
sleeps = plan.get("sleep", [0.02, 0.05])  # by global rank: rank 1 is the straggler
slow = plan.get("slow")  # {"rank": R, "after_s": S, "sleep": X}: rank R sleeps X per step from S on
total, budget, noise = plan.get("total", 300), plan.get("budget", 4.0), plan.get("noise", 0.0)
torch.manual_seed(rank)
model = torch.nn.Linear(16, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
dist.barrier()
steps, slow_from = [], None
start = time.time()
for step in range(1, total + 1):
    x = torch.randn(8, 16)
    target = x[:, :1] + noise * torch.randn(8, 1) if noise else x[:, :1]
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward(); opt.step(); opt.zero_grad()
    pause = sleeps[rank % len(sleeps)]
    if slow and slow["rank"] == rank and time.time() - start >= slow["after_s"]:
        if slow_from is None:
            slow_from = round(time.time() - t0, 4)
        pause = slow["sleep"]
    time.sleep(pause)
    steps.append([step, round(time.time() - t0, 4), loss.item()])
    if step % 5 == 0:
        print(f"step {step}/{total} | loss {loss.item():.4f} | lr 5.00e-02", flush=True)
    if time.time() - start > budget:  # a time-budgeted run: each rank stops where it got to
        break
last = [s for s in steps if s[0] % 5 == 0][-1]
Path(os.environ["RUNS_TRUTH"] + f".rank{rank}").write_text(json.dumps(
    {"total": total, "final_step": last[0], "logged_loss": round(last[2], 4), "steps": steps,
     "node": int(os.environ.get("GROUP_RANK", "0")), "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
     "slow_from": slow_from}))
dist.barrier()
'''


def run_torchrun_ddp() -> None:
    """A real 2-process torchrun on CPU (gloo), `--tee 3`: every line gets `[rankN]:`.
    Each rank trains for the same wall-time budget, without a per-step all-reduce, and
    rank 1 is slower: it ends behind, and its pace is the job's. Truth per rank is the
    last step it printed."""
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "train_ddp.py"
        script.write_text(DDP_SCRIPT)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        rc = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc-per-node", "2", "--tee", "3", str(script)], env=env)
    path = os.environ.get("RUNS_TRUTH")
    if path:
        ranks = {r: json.loads(Path(f"{path}.rank{r}").read_text()) for r in (0, 1)}
        for r in ranks:
            Path(f"{path}.rank{r}").unlink()
        slow = ranks[1]
        truth().total = slow["total"]
        truth().steps = [st for st in slow["steps"] if st[0] <= slow["final_step"]]
        truth().logged_loss = slow["logged_loss"]
        truth().extra = {"ranks": {str(r): {k: v for k, v in t.items() if k != "steps"} for r, t in ranks.items()},
                         "slowest_rank": 1}
    sys.exit(rc)


TWO_NODE_PLAN = {"sleep": [0.03, 0.032, 0.03, 0.03], "slow": {"rank": 3, "after_s": 3.0, "sleep": 0.1}, "budget": 14.0,
                 "total": 600, "noise": 0.5}
"""Four ranks at about one pace (rank 1 a little behind rank 0, as real ranks are: node
0's reading is then rank 1's, and the job's loss must still be rank 0's), then global
rank 3 (node 1's local rank 1) three times slower from 3 s into its 14 s budget. A rank's
rate as gpuctl shows it is its whole run's pace (`rate.PaceClock.pace`), so the slow part
is most of the run: by the end rank 3's whole-run pace is well under
`sessions.jobs.summary.STRAGGLER_RATIO` of the median and the truth has a straggler, and
before its slowdown it has none."""


def run_torchrun_2node() -> None:
    """Two real torchrun agents as the two nodes of one job (static rendezvous on
    127.0.0.1, `--nnodes 2 --node-rank 0|1 --nproc-per-node 2`, gloo), each on its own
    pseudo-terminal as its node's tmux pane holds it, `--tee 3`: every line gets torchrun's
    default prefix, `[default<local rank>]:`, so both nodes print `[default0]:` and
    `[default1]:` (global ranks 2 and 3 on node 1). The trainer is `DDP_SCRIPT` (each
    rank on its own wall-time budget, no per-step collective, as in `torchrun_ddp`:
    with one a straggler slows every rank alike and no step rate tells it apart) under
    `TWO_NODE_PLAN`. Writes `NAME.node<i>.log`, `NAME.node<i>.times.json` and
    `NAME.truth.json` (see the README) itself: it is its own capture."""
    import socket

    name = "torchrun_2node"
    with socket.socket() as sock:  # a free port for the rendezvous store (the master's)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="runs-truth-")
    truth_path = f"{tmp}/nodes.json"
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "train_ddp.py"
        script.write_text(DDP_SCRIPT)
        env = _env(name, t0, truth_path, True)
        env["RUNS_DDP_PLAN"] = json.dumps(TWO_NODE_PLAN)
        argvs = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                  "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(port),
                  "--tee", "3", str(script)] for node in (0, 1)]
        outs = run_on_ptys(argvs, env, COLUMNS.get(name, 120), t0)
    for node, (data, times, rc) in enumerate(outs):
        if rc != 0:
            raise SystemExit(f"{name}: node {node} exited {rc}")
        (HERE / f"{name}.node{node}.log").write_bytes(data)
        (HERE / f"{name}.node{node}.times.json").write_text(json.dumps(times))
    ranks = {}
    for rank in range(4):
        doc = json.loads(Path(f"{truth_path}.rank{rank}").read_text())
        doc["steps"] = [st for st in doc["steps"] if st[0] <= doc["final_step"]]  # what its log can show
        ranks[str(rank)] = doc
    slow = TWO_NODE_PLAN["slow"]
    (HERE / f"{name}.truth.json").write_text(json.dumps({
        "nnodes": 2, "nproc_per_node": 2, "total": TWO_NODE_PLAN["total"], "ranks": ranks,
        "straggler": {"rank": slow["rank"], "node": ranks[str(slow["rank"])]["node"],
                      "local_rank": ranks[str(slow["rank"])]["local_rank"],
                      "slow_from": ranks[str(slow["rank"])]["slow_from"]},
        "logged_loss": ranks["0"]["logged_loss"]}))


# ------------------------------------------------------------------ DeepSpeed, 2 ranks

DS_SCRIPT = r"""
import json, os, time
from pathlib import Path
import torch, deepspeed
from deepspeed.utils import log_dist
rank = int(os.environ.get("RANK", "0"))
t0 = float(os.environ["RUNS_T0"])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "steps_per_print": 10,
       "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}, "log_level": "info"}
engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
total, steps, logged = 150, [], None
for step in range(1, total + 1):
    for _micro in range(2):
        x = torch.randn(4, 16)
        loss = torch.nn.functional.mse_loss(engine(x), x[:, :1])
        engine.backward(loss)
        engine.step()
    time.sleep(0.06)
    steps.append([engine.global_steps, round(time.time() - t0, 4), loss.item()])
    if step % 10 == 0:
        log_dist(f"Loss: {loss.item():.4f}", ranks=[0])
        logged = round(loss.item(), 4)
    if step % 50 == 0 and step < total:
        engine.save_checkpoint(os.environ["RUNS_DS_CKPT"], tag=f"global_step{step}")
if rank == 0:
    Path(os.environ["RUNS_TRUTH"] + ".rank0").write_text(json.dumps(
        {"total": total, "final_step": steps[-1][0], "logged_loss": logged, "steps": steps}))
"""


def run_deepspeed() -> None:
    """A real DeepSpeed engine (CPU accelerator, 2 processes through the `deepspeed`
    launcher, gradient accumulation 2, `log_level: info`, `steps_per_print: 10`): its
    `step=N, skipped=..., lr=[...]` and `epoch=/micro_step=/global_step=` timer lines,
    the script's `log_dist` loss every 10 steps, and a checkpoint every 50. DeepSpeed
    prints no total. Truth is rank 0's."""
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "train_ds.py"
        script.write_text(DS_SCRIPT)
        env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", RUNS_DS_CKPT=str(Path(d) / "ckpt"))
        rc = subprocess.call([sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", str(script)],
                             env=env, cwd=d)
    path = os.environ.get("RUNS_TRUTH")
    if path and Path(f"{path}.rank0").exists():
        doc = json.loads(Path(f"{path}.rank0").read_text())
        Path(f"{path}.rank0").unlink()
        truth().total, truth().steps, truth().logged_loss = doc["total"], doc["steps"], doc["logged_loss"]
    sys.exit(rc)


# ------------------------------------------------------------------ capture

OWN_CAPTURE = {"torchrun_2node"}
"""Scenarios that capture themselves (several terminals at once), run in this process."""

SCENARIOS = {name[len("run_"):]: fn for name, fn in globals().items() if name.startswith("run_") and callable(fn)}

COLUMNS = {"lightning_tqdm_narrow": 80, "lightning_tqdm_wide": 200}
"""Terminal width per scenario (default 120): a bar is laid out to fit it."""


def _env(name: str, t0: float, truth_path: str, tty: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)  # a file capture is block-buffered, as in real life
    cols = COLUMNS.get(name, 120)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", TERM="xterm-256color", PYTHONWARNINGS="ignore",
               HF_DATASETS_CACHE=tempfile.mkdtemp(prefix="runs-ds-"), RUNS_T0=repr(t0),
               RUNS_TRUTH=truth_path, OMP_NUM_THREADS="1")
    if tty:
        env.update(COLUMNS=str(cols), LINES="40")
    else:
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
    return env


def run_on_ptys(argvs: list[list[str]], env: dict[str, str], cols: int,
                t0: float) -> list[tuple[bytes, list[list[float]], int]]:
    """Run each command on its own pseudo-terminal, all at once; return per command its
    bytes, when each chunk arrived (`[[seconds since t0, end offset], ...]`) and its exit
    status."""
    import selectors

    sel = selectors.DefaultSelector()
    procs, out = [], []
    for i, argv in enumerate(argvs):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        procs.append(subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True))
        os.close(slave)
        sel.register(master, selectors.EVENT_READ, i)
        out.append(([], []))
    sizes = [0] * len(argvs)
    while sel.get_map():
        for key, _ in sel.select():
            try:
                data = os.read(key.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                sel.unregister(key.fd)
                os.close(key.fd)
                continue
            i = key.data
            out[i][0].append(data)
            sizes[i] += len(data)
            out[i][1].append([round(time.time() - t0, 4), sizes[i]])
    return [(b"".join(chunks), times, proc.wait()) for (chunks, times), proc in zip(out, procs)]


def capture_tty(name: str, truth_path: str) -> tuple[bytes, list[list[float]]]:
    """Run on a pseudo-terminal; return its bytes and when each chunk arrived."""
    t0 = time.time()
    ((data, times, _),) = run_on_ptys([[sys.executable, __file__, "--run", name]],
                                      _env(name, t0, truth_path, True), COLUMNS.get(name, 120), t0)
    return data, times


def capture_file(name: str, truth_path: str) -> bytes:
    with tempfile.TemporaryFile() as f:
        subprocess.run([sys.executable, __file__, "--run", name], stdout=f, stderr=subprocess.STDOUT,
                       env=_env(name, time.time(), truth_path, False), check=False)
        f.seek(0)
        return f.read()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        SCENARIOS[argv[1]]()
        return
    for name in argv or list(SCENARIOS):
        t = time.time()
        if name in OWN_CAPTURE:
            SCENARIOS[name]()
            print(f"{name}: {time.time() - t:.1f}s", file=sys.stderr)
            continue
        tmp = tempfile.mkdtemp(prefix="runs-truth-")
        data, times = capture_tty(name, f"{tmp}/tty.json")
        (HERE / f"{name}.tty.log").write_bytes(data)
        (HERE / f"{name}.tty.times.json").write_text(json.dumps(times))
        data = capture_file(name, f"{tmp}/file.json")
        (HERE / f"{name}.file.log").write_bytes(data)
        truth_doc = {}
        for kind in ("tty", "file"):
            p = Path(f"{tmp}/{kind}.json")
            truth_doc[kind] = json.loads(p.read_text()) if p.exists() else None
        (HERE / f"{name}.truth.json").write_text(json.dumps(truth_doc, indent=None))
        print(f"{name}: {time.time() - t:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
