"""Tracker files read by the agent, against real files written by the real libraries.

The fixtures under tests/data/trackers/ come from `make_trackers.py` there: tiny CPU runs
of transformers' Trainer (trainer_state.json per checkpoint, tensorboard events),
torch.utils.tensorboard, Lightning's CSVLogger, MLflow's file store and an offline W&B
run, each with a truth.json written from inside the training. The agent's readers are
run directly here (the same functions the agent runs on the pod and `progress --dir`
runs locally); tests/test_trackers_pod.py runs them through the real sshd.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from backends.pod_agent import tfevents, tracker_base, tracker_search
from backends.pod_agent.trackers import TrackerWatch
from sessions.progress.tracker import Progress
from sessions.progress.trackers import TrackerReading, merge, readings_from, tracker_roots, with_config_total
from tui.cli import main

DATA = Path(__file__).parent / "data" / "trackers"


def run_dir(name: str, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of one fixture run with its files' mtimes as they were when written."""
    dest = tmp_path / name
    shutil.copytree(DATA / name, dest, symlinks=True)
    truth = json.loads((dest / "truth.json").read_text())
    now = time.time()
    for rel, before in truth["mtime_before_newest_s"].items():
        os.utime(dest / rel, (now - before, now - before))
    return dest, truth


def readings(root: Path) -> dict[str, dict]:
    message = TrackerWatch("s", [str(root)]).check(time.monotonic())
    assert message["kind"] == "trackers" and message["id"] == "s"
    return {r["source"]: r for r in message["trackers"]}


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)  # tfevents and wandb keep float32


# ------------------------------------------------------------------ each tracker vs truth


def test_trainer_state_gives_exact_step_total_loss_eval_and_best_checkpoint(tmp_path):
    root, truth = run_dir("hf_trainer", tmp_path)
    r = readings(root)["trainer_state"]
    assert r["path"].endswith("output/checkpoint-30/trainer_state.json")  # the newest of three
    assert (r["step"], r["total"]) == (truth["global_step"], truth["max_steps"])
    assert (r["loss_step"], r["loss"]) == (truth["last_loss_step"], truth["last_loss"])
    assert [s for s, _ in r["history"]] == sorted(int(s) for s in truth["logged"])
    assert r["eval"]["eval_loss"] == truth["evals"][str(truth["global_step"])]
    assert "eval_runtime" not in r["eval"]  # an evaluation's timing is not its result
    assert r["best_checkpoint"] == truth["best_model_checkpoint"]


def test_the_newest_trainer_state_wins_and_equal_mtimes_fall_to_the_highest_checkpoint(tmp_path):
    root, _ = run_dir("hf_trainer", tmp_path)
    newest = root / "output" / "checkpoint-10" / "trainer_state.json"
    os.utime(newest, (time.time() + 5, time.time() + 5))
    assert readings(root)["trainer_state"]["path"] == str(newest)
    stamp = time.time()
    for ckpt in ("checkpoint-10", "checkpoint-20", "checkpoint-30"):
        os.utime(root / "output" / ckpt / "trainer_state.json", (stamp, stamp))
    assert readings(root)["trainer_state"]["path"].endswith("checkpoint-30/trainer_state.json")


def test_tfevents_written_by_the_trainer(tmp_path):
    root, truth = run_dir("hf_trainer", tmp_path)
    r = readings(root)["tfevents"]
    assert r["loss_key"] == "train/loss"  # not train/train_loss, the run's summary
    assert r["step"] == truth["global_step"] and r["loss_step"] == truth["last_loss_step"]
    assert close(r["loss"], truth["last_loss"])
    assert close(r["eval"]["eval/loss"], truth["evals"][str(truth["global_step"])])
    assert [s for s, _ in r["history"]] == sorted(int(s) for s in truth["logged"])


def test_tfevents_simple_values_tensor_scalars_and_rate_from_wall_times(tmp_path):
    root, truth = run_dir("tensorboard", tmp_path)
    r = readings(root)["tfevents"]
    assert r["step"] == truth["last_step"] and close(r["loss"], truth["last_loss"])
    assert close(r["eval"]["eval/accuracy"], truth["eval_accuracy"])  # add_scalar(new_style=True): a TensorProto
    assert "weights" not in r["scalars"]  # a histogram is no scalar
    assert r["rate"] == pytest.approx(truth["rate"])
    assert len(r["history"]) == len(truth["losses"])
    assert all(close(v, truth["losses"][str(s)]) for s, v in r["history"])
    assert r["error"] is None


def test_lightning_metrics_csv(tmp_path):
    root, truth = run_dir("lightning", tmp_path)
    r = readings(root)["csv"]
    assert r["step"] == truth["global_step"]  # Lightning writes the 0-based index of the logging step
    assert r["loss_key"] == "train_loss"
    assert r["loss"] == truth["losses"][str(r["loss_step"] - 1)]
    assert set(r["eval"]) == {"val_loss"}
    assert [s % truth["log_every_n_steps"] for s, _ in r["history"]] == [0] * len(r["history"])


def test_mlflow_file_store(tmp_path):
    root, truth = run_dir("mlflow", tmp_path)
    r = readings(root)["mlflow"]
    assert (r["step"], r["loss_key"], r["loss"]) == (truth["last_step"], "train_loss", truth["last_loss"])
    assert r["history"] == sorted([int(s), v] for s, v in truth["losses"].items())
    assert r["rate"] and r["rate"] > 0  # from the metric lines' own timestamps
    assert r["eval"] == {"val_loss": 0.33}


def test_offline_wandb_run(tmp_path):
    """An offline run writes no wandb-summary.json: its figures are in run-<id>.wandb."""
    root, truth = run_dir("wandb_offline", tmp_path)
    r = readings(root)["wandb"]
    assert r["path"].endswith(".wandb")
    assert (r["step"], r["loss_key"]) == (truth["last_step"], "train/loss")
    assert close(r["loss"], truth["last_loss"])
    assert r["eval"] == {"eval/loss": 0.25}
    assert len(r["history"]) == truth["last_step"]


def test_wandb_summary_json_of_an_online_run(tmp_path):
    files = tmp_path / "wandb" / "latest-run" / "files"
    files.mkdir(parents=True)
    (files / "wandb-summary.json").write_text(json.dumps(
        {"train/loss": 0.5, "train/global_step": 120, "_step": 30, "_runtime": 60.0, "eval/loss": 0.7}))
    r = readings(tmp_path)["wandb"]
    assert (r["step"], r["loss"], r["eval"], r["rate"]) == (120, 0.5, {"eval/loss": 0.7}, 2.0)


# ------------------------------------------------------------------ reading as files grow


def test_a_file_is_read_again_only_when_it_changed(tmp_path):
    root, _ = run_dir("hf_trainer", tmp_path)
    watch = TrackerWatch("s", [str(root)], every_s=0)
    assert watch.check(time.monotonic()) is not None

    def refuse(mtime):
        raise AssertionError("re-read an unchanged file")

    for tracker in watch.files.values():
        tracker.read = refuse
    assert watch.check(time.monotonic()) is None


def test_a_growing_events_file_is_read_on_from_where_it_stopped_even_cut_mid_record(tmp_path):
    src = next((DATA / "tensorboard").rglob("events.out.tfevents.*"))
    data = src.read_bytes()
    dest = tmp_path / "runs" / src.name
    dest.parent.mkdir()
    dest.write_bytes(data[: len(data) // 2])  # a writer caught mid-record
    watch = TrackerWatch("s", [str(tmp_path)], every_s=0)
    first = watch.check(time.monotonic())["trackers"][0]
    assert first["error"] is None and 0 < first["step"] < 49
    with open(dest, "ab") as f:
        f.write(data[len(data) // 2:])
    second = watch.check(time.monotonic())["trackers"][0]
    assert second["step"] == 49 and second["error"] is None
    assert [s for s, _ in second["history"]] == list(range(50))


def test_metrics_csv_is_read_on_as_rows_arrive_and_afresh_when_lightning_rewrites_it(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,train_loss\n0,4,2.0\n0,9,1.5\n0,14,1.")  # the last row half written
    watch = TrackerWatch("s", [str(csv_path)], every_s=0)
    first = watch.check(0.0)["trackers"][0]
    assert (first["step"], first["loss"]) == (10, 1.5)
    with open(csv_path, "a") as f:
        f.write("25\n")
    assert watch.check(1.0)["trackers"][0]["loss"] == 1.25
    # a new column (val_loss): Lightning rewrites the file with the new header
    csv_path.write_text("epoch,step,train_loss,val_loss\n0,4,2.0,\n0,9,1.5,\n0,14,1.25,\n0,19,1.0,\n0,19,,0.9\n")
    again = watch.check(2.0)["trackers"][0]
    assert (again["step"], again["loss"], again["eval"]) == (20, 1.0, {"val_loss": 0.9})
    assert [s for s, _ in again["history"]] == [5, 10, 15, 20]


def test_a_damaged_record_is_skipped_and_said(tmp_path):
    src = next((DATA / "tensorboard").rglob("events.out.tfevents.*"))
    data = bytearray(src.read_bytes())
    data[len(data) // 3] ^= 0xFF
    (tmp_path / src.name).write_bytes(bytes(data))
    r = readings(tmp_path)["tfevents"]
    assert r["step"] == 49 and "damaged" in r["error"]


def test_files_are_looked_at_every_two_seconds_not_every_tick(tmp_path):
    root, _ = run_dir("tensorboard", tmp_path)
    watch = TrackerWatch("s", [str(root)])
    assert watch.check(100.0) is not None
    events = next(root.rglob("events.out.tfevents.*"))
    os.utime(events, (time.time() + 9, time.time() + 9))
    assert watch.check(100.0 + tracker_base.TRACKER_CHECK_S / 2) is None
    again = watch.check(100.0 + tracker_base.TRACKER_CHECK_S)
    assert again is not None and again["current"] == ["tfevents"]


def test_the_search_walks_again_only_when_a_folder_changed(tmp_path):
    root, _ = run_dir("hf_trainer", tmp_path)
    watch = TrackerWatch("s", [str(root)], every_s=0)
    watch.check(0.0)
    assert watch.scan() is False and watch._dirs_unchanged()
    newer = root / "output" / "checkpoint-40"
    newer.mkdir()  # the trainer saves a checkpoint: output/ changed
    state = json.loads((root / "output" / "checkpoint-30" / "trainer_state.json").read_text())
    state["global_step"] = 40
    (newer / "trainer_state.json").write_text(json.dumps(state))
    os.utime(newer / "trainer_state.json", (time.time() + 60, time.time() + 60))
    message = watch.check(tracker_base.TRACKER_RESCAN_S + 1)
    (state_reading,) = [r for r in message["trackers"] if r["source"] == "trainer_state"]
    assert state_reading["step"] == 40 and "checkpoint-40" in state_reading["path"]


def test_later_messages_carry_only_what_changed_and_the_book_keeps_the_rest(tmp_path):
    from sessions.config.loader import parse_config
    from sessions.fleet.session_book import SessionBook

    root, truth = run_dir("hf_trainer", tmp_path)
    watch = TrackerWatch("sft", [str(root)], every_s=0)
    first = watch.check(0.0)
    assert [r["source"] for r in first["trackers"]] == first["current"] == ["trainer_state", "tfevents"]
    events = next(root.rglob("events.out.tfevents.*"))
    os.utime(events, (time.time() + 9, time.time() + 9))
    second = watch.check(1.0)
    assert [r["source"] for r in second["trackers"]] == ["tfevents"] and second["current"] == first["current"]
    config = parse_config(f"pods:\n  - name: p\n    host: h\n    sessions:\n      - {{name: sft, workdir: {root}}}\n",
                          tmp_path / "c.yaml")
    book = SessionBook(config.pods[0])
    assert book.on_trackers(first) == book.on_trackers(second) == "sft"
    (view,) = book.view(time.time())
    assert [t.source for t in view.trackers] == ["trainer_state", "tfevents"]
    assert view.progress.total == truth["max_steps"]


def test_crc32c_matches_the_published_check_value():
    assert tfevents.crc32c(b"123456789") == 0xE3069283


# ------------------------------------------------------------------ the bounded search


def test_the_search_skips_huge_folders_version_control_and_what_is_too_deep(tmp_path):
    huge = tmp_path / "data"
    huge.mkdir()
    for i in range(tracker_search.TRACKER_MAX_DIR_ENTRIES + 1):
        (huge / f"{i}.png").touch()
    (huge / "trainer_state.json").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "metrics.csv").write_text("step,loss\n1,2\n")
    deep = tmp_path.joinpath(*"abcdef")
    deep.mkdir(parents=True)
    (deep / "metrics.csv").write_text("step,loss\n1,2\n")
    found, info = tracker_search.find_trackers([str(tmp_path)])
    assert found == {} and info["skipped_dirs"] == 1 and not info["truncated"]


def test_the_search_stops_at_its_entry_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(tracker_search, "TRACKER_MAX_ENTRIES", 50)
    for i in range(30):
        (tmp_path / f"d{i:02}").mkdir()
        (tmp_path / f"d{i:02}" / "x").touch()
    _, info = tracker_search.find_trackers([str(tmp_path)])
    assert info["truncated"]


def test_tracker_roots_follow_config():
    assert tracker_roots("/w", None) == ["/w"]
    assert tracker_roots(None, None) == []
    assert tracker_roots("/w", ()) == []
    assert tracker_roots("/w", ("out", "/abs/x", "~/y")) == ["/w/out", "/abs/x", "~/y"]


# ------------------------------------------------------------------ merged with the log


def _reading(**kw) -> TrackerReading:
    base = {"source": "trainer_state", "path": "/w/trainer_state.json", "mtime": 1000.0}
    return TrackerReading.from_agent({**base, **kw})


def test_merge_takes_the_newer_step_the_exact_total_and_names_each_source():
    log = Progress(format="tqdm", step=130, total=200, rate=2.0, loss=0.9, eta_s=35.0)
    state = _reading(step=120, total=600, loss=0.8, loss_step=120, history=[[110, 1.0], [120, 0.8]])
    merged = merge(log, (state,))
    p, sources = merged.progress, dict(merged.sources)
    assert (p.step, p.total, p.loss, p.rate) == (130, 600, 0.9, 2.0)
    assert p.eta_s == pytest.approx((600 - 130) / 2.0)
    assert sources == {"step": "log", "total": "trainer_state", "rate": "log", "loss": "log",
                       "eta_s": "trainer_state"}
    assert merged.loss_history == (1.0, 0.8)


def test_merge_without_a_log_uses_the_tracker_alone():
    events = _reading(source="tfevents", step=40, loss=0.5, loss_step=40, rate=4.0)
    merged = merge(None, (events,))
    assert (merged.progress.format, merged.progress.step, merged.progress.rate) == ("tfevents", 40, 4.0)
    assert dict(merged.sources)["rate"] == "tfevents"


def test_a_tracker_file_older_than_the_session_is_an_earlier_run():
    old = _reading(step=999, total=1000, mtime=1000.0)
    assert merge(None, (old,), started=5000.0).progress is None
    assert merge(None, (old,), started=1030.0).progress.step == 999


def test_config_total_is_named_as_such():
    merged = with_config_total(merge(Progress(format="torchrun", step=5, rate=1.0), ()), 10)
    assert merged.progress.total == 10 and dict(merged.sources)["total"] == "config"


def test_readings_from_an_agent_message_drop_what_is_not_a_reading():
    message = {"trackers": [{"source": "csv", "path": "/m.csv", "step": "12", "loss": float("nan")}, "junk"]}
    (r,) = readings_from(message)
    assert r.step is None and math.isnan(r.loss)


# ------------------------------------------------------------------ gpuctl progress --dir


def test_progress_dir_explains_what_it_found(tmp_path, capsys):
    root, truth = run_dir("hf_trainer", tmp_path)
    assert main(["progress", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "trainer_state" in out and "tfevents" in out and "checkpoint-30" in out
    assert f"total  {truth['max_steps']:<12} from trainer_state" in out
    ours = [line for line in out.splitlines() if not any(p in line for p in (str(root), "best:", "tfevents."))]
    assert max(len(line) for line in ours) <= 80  # paths are the only long lines
    assert re.search(r"^  rate   \S+ +from tfevents$", out, re.M)  # trainer_state.json has no times; the events file has


def test_progress_dir_json(tmp_path, capsys):
    root, truth = run_dir("lightning", tmp_path)
    assert main(["progress", "--dir", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["step"] == truth["global_step"] and doc["sources"]["step"] == "csv"
    assert doc["total"] is None and [t["source"] for t in doc["trackers"]] == ["csv"]


def test_progress_dir_that_is_not_a_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["progress", "--dir", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


# ------------------------------------------------------------------ the pod screen's row


def test_the_pod_screens_session_row_names_where_tracker_figures_came_from():
    from sessions.snapshot import SessionSnapshot, SessionState
    from tui.widgets.sessions_panel import numbers_text

    log = Progress(format="tqdm", step=130, rate=2.0, loss=0.9)
    state = _reading(step=120, total=600, loss=0.8, loss_step=120)
    events = _reading(source="tfevents", step=140, loss=0.7, loss_step=140)
    merged = merge(log, (state, events))
    row = SessionSnapshot(name="sft", state=SessionState.RUNNING, progress=merged.progress, sources=merged.sources)
    assert numbers_text(row).endswith(" · tfevents (step, loss), trainer_state (total)")
    only_log = SessionSnapshot(name="sft", state=SessionState.RUNNING, progress=log, sources=(("step", "log"),))
    assert "·" not in numbers_text(only_log)
