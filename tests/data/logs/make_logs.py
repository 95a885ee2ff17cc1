"""Make the captured training logs under tests/data/logs/ from real frameworks on CPU.

Why: the progress parser is judged on what real frameworks print, including their
`\\r` bar updates, ANSI colours and what they print when stdout is not a terminal.
So every scenario here runs a real (tiny) training job and is captured twice: once
through a pseudo-terminal (`<name>.tty.log`, the bytes a tmux pipe-pane would see) and
once with stdout/stderr redirected to a file (`<name>.file.log`).

How to rerun (about 3 minutes on 2 CPU cores; needs no GPU and no network):

    python3 -m venv /tmp/capvenv
    /tmp/capvenv/bin/pip install torch==2.13.0          # the CPU wheel, first
    /tmp/capvenv/bin/pip install tqdm transformers lightning rich datasets accelerate keras
    HF_HUB_OFFLINE=1 /tmp/capvenv/bin/python tests/data/logs/make_logs.py [SCENARIO ...]

Nothing is downloaded from a model hub: the models are built from small configs with
random weights and the data is synthetic. Each training step sleeps a little (a
callback or a line in the step) so that the pace resembles a real model's rather than
a tiny model's microseconds; the bars and log lines are the frameworks' own.
The versions used for the checked-in files are in README.md beside this script.
"""

from __future__ import annotations

import fcntl
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
COLUMNS, ROWS = 120, 40


# --------------------------------------------------------------------------- scenarios
# Each runs in a child process (python make_logs.py --run NAME) so that its output is
# exactly what the framework printed to a terminal or a file.


def run_tqdm_plain() -> None:
    """A hand-written loop with a tqdm bar and a loss postfix: the commonest script."""
    from tqdm import tqdm

    bar = tqdm(range(60), desc="train")
    for i in bar:
        time.sleep(0.05)
        bar.set_postfix(loss=f"{2.5 - i * 0.02:.4f}", lr=3e-4)


def run_tqdm_slow() -> None:
    """A slow loop, so tqdm prints `s/it` rather than `it/s`."""
    from tqdm import tqdm

    for _ in tqdm(range(6)):
        time.sleep(1.3)


def _tiny_gpt2(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=128, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(cfg)


def _lm_dataset(n: int):
    """Synthetic token data through `datasets.Dataset.map`, whose bar is a distractor."""
    import random

    from datasets import Dataset

    rnd = random.Random(0)
    raw = Dataset.from_dict({"text": [" ".join(str(rnd.randrange(100)) for _ in range(16)) for _ in range(n)]})

    def tok(batch):
        ids = [[int(w) + 2 for w in t.split()] for t in batch["text"]]
        return {"input_ids": ids, "labels": ids}

    return raw.map(tok, batched=True, remove_columns=["text"])


def _trainer(out: str, max_steps: int, step_sleep: float, save_steps: int, eval_steps: int | None):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Pace(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            time.sleep(step_sleep)

    args = TrainingArguments(
        output_dir=out,
        max_steps=max_steps,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_steps=5,
        save_steps=save_steps,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        learning_rate=5e-4,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    return Trainer(
        model=_tiny_gpt2(),
        args=args,
        train_dataset=_lm_dataset(400),
        eval_dataset=_lm_dataset(48),
        callbacks=[Pace()],
    )


def run_hf_trainer() -> None:
    """HF Trainer: map bar, training bar, eval bars mid-run, loss dicts, final summary."""
    with tempfile.TemporaryDirectory() as out:
        _trainer(out, max_steps=40, step_sleep=0.08, save_steps=1000, eval_steps=20).train()


def run_hf_resume() -> None:
    """HF Trainer resumed from checkpoint-20 of 50: the bar jumps 0 -> 20."""
    with tempfile.TemporaryDirectory() as out:
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(1), os.dup(2)
        os.dup2(devnull, 1), os.dup2(devnull, 2)  # the first leg is not part of the log
        try:
            _trainer(out, max_steps=20, step_sleep=0.0, save_steps=20, eval_steps=None).train()
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        print("=== resuming ===", flush=True)
        trainer = _trainer(out, max_steps=50, step_sleep=0.15, save_steps=1000, eval_steps=None)
        trainer.train(resume_from_checkpoint=os.path.join(out, "checkpoint-20"))


def _lightning_fit(rich: bool) -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

        def training_step(self, batch, _):
            time.sleep(0.04)
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    x = torch.randn(320, 16)
    y = x[:, :1] * 0.5
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    val = DataLoader(TensorDataset(x[:80], y[:80]), batch_size=16)
    # With rich installed Lightning picks its Rich bar by default; ask for each explicitly.
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    callbacks = [RichProgressBar() if rich else TQDMProgressBar()]
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(
            max_epochs=3, accelerator="cpu", devices=1, default_root_dir=out,
            callbacks=callbacks, enable_model_summary=False, logger=False,
            enable_checkpointing=False,
        )
        trainer.fit(Tiny(), train, val)


def run_lightning_tqdm() -> None:
    """Lightning's default TQDM bar: counts batches within an epoch."""
    _lightning_fit(rich=False)


def run_lightning_rich() -> None:
    """Lightning's RichProgressBar: ANSI-heavy, `Epoch k/K` in its description."""
    _lightning_fit(rich=True)


def run_keras() -> None:
    """Keras 3 `fit` (torch backend) with its own progress bar and `ms/step`."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np

    class Pace(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.03)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 16)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, callbacks=[Pace()], verbose=1)


SCENARIOS = {
    name[len("run_"):]: fn for name, fn in globals().items() if name.startswith("run_") and callable(fn)
}


# ---------------------------------------------------------------------------- capture


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false", COLUMNS=str(COLUMNS), LINES=str(ROWS),
        TERM="xterm-256color", PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore",
        HF_DATASETS_CACHE=tempfile.mkdtemp(prefix="capds-"),
    )
    return env


def capture_tty(name: str) -> bytes:
    """Run a scenario on a pseudo-terminal of COLUMNS x ROWS and return its raw bytes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--run", name], stdin=slave, stdout=slave, stderr=slave,
        env=_child_env(), close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(master)
    return b"".join(chunks)


def capture_file(name: str) -> bytes:
    """Run a scenario with stdout and stderr redirected to one file (not a terminal)."""
    with tempfile.TemporaryFile() as f:
        subprocess.run([sys.executable, __file__, "--run", name], stdout=f, stderr=subprocess.STDOUT,
                       env=_child_env(), check=False)
        f.seek(0)
        return f.read()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        SCENARIOS[argv[1]]()
        return
    for name in argv or list(SCENARIOS):
        for kind, capture in (("tty", capture_tty), ("file", capture_file)):
            t0 = time.time()
            data = capture(name)
            path = HERE / f"{name}.{kind}.log"
            path.write_bytes(data)
            print(f"{path.name}: {len(data)} bytes in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
