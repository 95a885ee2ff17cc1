"""Regenerate the tracker-file fixtures with the real libraries, and their ground truth.

Run in a throwaway venv (nothing here is a gpuctl dependency):

    python3 -m venv /tmp/trk-venv
    /tmp/trk-venv/bin/pip install torch==2.13.0 transformers accelerate tensorboard lightning mlflow-skinny wandb
    /tmp/trk-venv/bin/python tests/data/trackers/make_trackers.py

Each run trains a tiny model on the CPU for a few seconds, in its own folder laid out
as the library lays it out (so the agent's bounded search meets the real layout), and
writes ``truth.json`` from INSIDE the training (callbacks and the training step itself
record the true step, total and loss; nothing is parsed back from the files). Only the
tracker files and ``truth.json`` are kept: checkpoints' weights and optimizer states are
deleted. ``truth.json`` also keeps each kept file's mtime relative to the newest, since
git does not keep mtimes and "the newest trainer_state.json" depends on them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEEP = ("trainer_state.json", "metrics.csv", "wandb-summary.json", "output.log", "hparams.yaml", "meta.yaml")


def keep(path: Path) -> bool:
    name = path.name
    if name in KEEP or name.startswith("events.out.tfevents."):
        return True
    parts = path.parts
    return name.endswith(".wandb") or ("mlruns" in parts and ("metrics" in parts or "params" in parts))


def finish(work: Path, name: str, truth: dict) -> None:
    """Copy the tracker files of ``work`` into tests/data/trackers/<name>, with truth.json."""
    dest = HERE / name
    if dest.exists():
        shutil.rmtree(dest)
    files = {}
    for path in sorted(work.rglob("*")):
        if path.is_symlink() and path.name == "latest-run":
            link = dest / path.relative_to(work)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(path), link)
            continue
        if path.is_file() and not path.is_symlink() and keep(path) and "latest-run" not in path.parts:
            rel = path.relative_to(work)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            files[str(rel)] = path.stat().st_mtime
    newest = max(files.values())
    truth["workdir"] = str(work)
    truth["mtime_before_newest_s"] = {rel: round(newest - t, 3) for rel, t in files.items()}
    (dest / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    print(f"{name}: {len(files)} files, truth {json.dumps({k: v for k, v in truth.items() if k != 'mtime_before_newest_s'})[:300]}")


def hf_trainer(work: Path) -> None:
    """transformers.Trainer: checkpoints every 10 steps (trainer_state.json), eval every
    10, tensorboard reporting, best model by eval_loss."""
    import torch
    from torch import nn
    from transformers import Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x, labels=None):
            out = self.lin(x).squeeze(-1)
            return {"loss": nn.functional.mse_loss(out, labels), "logits": out}

    xs = torch.randn(256, 4)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    data = [{"x": xs[i], "labels": ys[i]} for i in range(256)]
    truth: dict = {"logged": {}, "evals": {}}

    class Truth(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                truth["logged"][str(state.global_step)] = float(logs["loss"])
            if logs and "eval_loss" in logs:
                truth["evals"][str(state.global_step)] = float(logs["eval_loss"])

        def on_train_end(self, args, state, control, **kwargs):
            truth["global_step"] = state.global_step
            truth["max_steps"] = state.max_steps
            truth["best_model_checkpoint"] = state.best_model_checkpoint

    args = TrainingArguments(
        output_dir=str(work / "output"), max_steps=30, per_device_train_batch_size=8,
        logging_steps=5, save_steps=10, eval_strategy="steps", eval_steps=10,
        report_to=["tensorboard"],
        metric_for_best_model="eval_loss", load_best_model_at_end=True, save_total_limit=5,
        learning_rate=0.05, use_cpu=True, disable_tqdm=True,
    )
    trainer = Trainer(model=Tiny(), args=args, train_dataset=data, eval_dataset=data[:64],
                      callbacks=[Truth()])
    trainer.train()
    last = max(truth["logged"], key=int)
    truth["last_loss_step"], truth["last_loss"] = int(last), truth["logged"][last]
    finish(work, "hf_trainer", truth)


def tensorboard(work: Path) -> None:
    """torch.utils.tensorboard: simple_value scalars, one new_style (tensor) scalar, a
    histogram (skipped by the reader), wall times 0.5 s apart."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(work / "runs" / "exp1"))
    truth: dict = {"losses": {}}
    t0 = 1_700_000_000.0
    for step in range(0, 50):
        loss = 2.0 / (1 + step) + 0.01 * step
        writer.add_scalar("train/loss", loss, step, walltime=t0 + 0.5 * step)
        writer.add_scalar("train/learning_rate", 1e-3 * (1 - step / 50), step, walltime=t0 + 0.5 * step)
        truth["losses"][str(step)] = loss
        if step % 10 == 9:
            writer.add_scalar("eval/accuracy", 0.5 + step / 100, step, walltime=t0 + 0.5 * step, new_style=True)
            writer.add_histogram("weights", torch.randn(100), step, walltime=t0 + 0.5 * step)
            truth["eval_accuracy"] = 0.5 + step / 100
    writer.close()
    truth.update(last_step=49, last_loss=truth["losses"]["49"], rate=2.0)
    finish(work, "tensorboard", truth)


def lightning_csv(work: Path) -> None:
    """Lightning with CSVLogger: train_loss every 5 steps, val_loss per epoch, 2 epochs."""
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    truth: dict = {"losses": {}}

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.lin(x).squeeze(-1), y)
            self.log("train_loss", loss)
            truth["losses"][str(self.global_step)] = float(loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.lin(x).squeeze(-1), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    xs = torch.randn(160, 4)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    loader = DataLoader(TensorDataset(xs, ys), batch_size=8)
    trainer = L.Trainer(max_epochs=2, log_every_n_steps=5, logger=CSVLogger(str(work), name="lightning_logs"),
                        enable_progress_bar=False, enable_checkpointing=False, accelerator="cpu",
                        enable_model_summary=False)
    trainer.fit(Tiny(), loader, DataLoader(TensorDataset(xs[:32], ys[:32]), batch_size=8))
    truth["global_step"] = trainer.global_step
    truth["log_every_n_steps"] = 5
    finish(work, "lightning", truth)


def mlflow_run(work: Path) -> None:
    """MLflow's file store (tracking URI file:./mlruns): loss per step, with timestamps."""
    import time

    import mlflow

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps the file store for those who ask
    mlflow.set_tracking_uri("file:" + str(work / "mlruns"))
    mlflow.set_experiment("tiny")
    truth: dict = {"losses": {}}
    with mlflow.start_run():
        mlflow.log_param("lr", 0.01)
        for step in range(0, 40, 2):
            loss = 1.5 / (1 + step)
            mlflow.log_metric("train_loss", loss, step=step)
            mlflow.log_metric("lr", 0.01, step=step)
            truth["losses"][str(step)] = loss
            time.sleep(0.02)
        mlflow.log_metric("val_loss", 0.33, step=38)
    truth.update(last_step=38, last_loss=truth["losses"]["38"])
    finish(work, "mlflow", truth)


def wandb_run(work: Path) -> None:
    """A W&B offline run as Hugging Face's integration logs it (train/loss, train/global_step)."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    import wandb

    truth: dict = {}
    run = wandb.init(project="tiny", dir=str(work), mode="offline")
    for step in range(1, 26):
        loss = 3.0 / step
        run.log({"train/loss": loss, "train/global_step": step, "train/learning_rate": 1e-4})
        print(f"step {step} loss {loss:.4f}")
        truth.update(last_step=step, last_loss=loss)
    run.log({"eval/loss": 0.25, "train/global_step": 25})
    run.finish()
    wandb.teardown()  # the wandb-core service writes the run file after finish() returns
    finish(work, "wandb_offline", truth)


RUNS = {"hf_trainer": hf_trainer, "tensorboard": tensorboard, "lightning": lightning_csv,
        "mlflow": mlflow_run, "wandb": wandb_run}


def main(names: list[str]) -> None:
    for name in names or list(RUNS):
        work = Path(tempfile.mkdtemp(prefix=f"gpuctl-trk-{name}-"))
        cwd = os.getcwd()
        os.chdir(work)
        try:
            RUNS[name](work)
        finally:
            os.chdir(cwd)


if __name__ == "__main__":
    main(sys.argv[1:])
