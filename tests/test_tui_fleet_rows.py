"""What the fleet screen says about each pod (tui.fleet_rows, pure), and the other
Textual-free helpers of the TUI: log line tones, sparklines, history, keymap, theme memory."""

from __future__ import annotations

import json

import pytest

from sessions.progress.tracker import Progress
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, SessionSnapshot
from tui import fleet_rows
from tui.bindings import binding_ids, keymap_from_config
from tui.log_lines import LineClassifier, LineSplitter
from tui.sparkline_history import History
from tui.theme_state import chosen_theme, remember_theme
from tui.widgets.spark import spark_text
from tui.widgets.tones import TONES


def gpu(i, temp=50.0, util=90.0, name="NVIDIA A100-SXM4-80GB"):
    return GpuSample(index=i, name=name, temp_c=temp, util_pct=util, mem_used_mib=40960, mem_total_mib=81920)


def pod(name="a100", *, gpus=(), sessions=(), state="online", price=2.0, uptime=5400.0, sampled_at=1.0):
    spend = price * uptime / 3600 if price is not None and uptime is not None else None
    return PodSnapshot(name=name, host="root@h:22", state=state, gpus=tuple(gpus), sessions=tuple(sessions),
                       price_per_hour=price, uptime_s=uptime, sampled_at=sampled_at, spend_usd=spend)


def session(name="train", state="running", *, step=1200, total=5000, rate=2.5, loss=1.2345, eta=1520.0,
            configured=True, stalled=False, exit_status=None):
    progress = Progress(format="tqdm", step=step, total=total, rate=rate, loss=loss, eta_s=eta)
    return SessionSnapshot(name, state=state, progress=progress, configured=configured, stalled=stalled,
                           exit_status=exit_status)


def text(cell) -> str:
    return "".join(part for part, _ in cell)


def test_a_busy_pod_in_one_row():
    p = pod(gpus=[gpu(0, 61, 97), gpu(1, 88, 93)], sessions=[session()])
    cells = fleet_rows.pod_cells(p)
    assert text(cells["gpus"]) == "2×A100   88°  95%"
    assert [tone for _, tone in cells["gpus"]] == ["", "hot", ""]
    assert text(cells["mem"]) == "80/160G"
    assert (text(cells["step"]), text(cells["rate"]), text(cells["loss"]), text(cells["eta"])) == (
        "1200/5000", "2.50 it/s", "1.234", "25m20s")
    assert (text(cells["price"]), text(cells["spent"])) == ("2.00", "$3.00")


def test_a_session_that_is_not_running_shows_no_rate_or_eta():
    p = pod(sessions=[session(state="exited", exit_status=1)])
    cells = fleet_rows.pod_cells(p)
    assert cells["session"] == (("train exit 1", "failed"),)
    long = fleet_rows.session_span(session("pretrain-llama", stalled=True))
    assert long == ("pre… stalled", "stalled")
    assert (text(cells["step"]), text(cells["rate"]), text(cells["eta"])) == ("1200/5000", "-", "-")


@pytest.mark.parametrize("names, shown", [
    (["NVIDIA H100 80GB HBM3"] * 8, "8×H100"),
    (["NVIDIA GeForce RTX 4090"], "1×4090"),
    (["NVIDIA A100-SXM4-80GB", "NVIDIA H100 PCIe"], "A100+H100"),
    (["Tesla V100-SXM2-16GB"], "1×V100"),
])
def test_gpu_models_are_short(names, shown):
    assert fleet_rows.gpu_model(pod(gpus=[gpu(i, name=n) for i, n in enumerate(names)])) == shown


def test_pods_without_gpu_data_say_why():
    assert fleet_rows.gpu_model(PodSnapshot("p", "h", gpu_status="none")) == "no GPU"
    assert fleet_rows.gpu_model(PodSnapshot("p", "h", state="offline")) == "-"


def test_the_main_session_is_a_running_configured_one():
    adopted = session("notebook", configured=False)
    idle = session("eval", state="absent")
    train = session("train")
    assert fleet_rows.main_session(pod(sessions=[idle, adopted, train])).name == "train"
    assert fleet_rows.main_session(pod(sessions=[idle, adopted])).name == "notebook"
    assert fleet_rows.main_session(pod(sessions=[idle])).name == "eval"
    assert fleet_rows.main_session(pod()) is None


def test_big_step_counts_stay_narrow():
    p = pod(sessions=[session(step=123456, total=1000000)])
    assert text(fleet_rows.pod_cells(p)["step"]) == "123k/1.0M"


@pytest.mark.parametrize("width, dropped", [
    (160, set()),
    (120, {"spent"}),
    (100, {"spent", "mem", "rate"}),
    (80, {"spent", "mem", "rate", "price", "loss"}),
    (60, {"spent", "mem", "rate", "price", "loss", "eta", "step"}),
])
def test_columns_drop_by_priority(width, dropped):
    keys = {c.key for c in fleet_rows.visible_columns(width, pod_width=9)}
    assert {c.key for c in fleet_rows.COLUMNS} - keys == dropped
    assert {"pod", "state"} <= keys


def test_sorting_puts_unknown_values_last_in_both_directions():
    pods = [pod("a", gpus=[gpu(0, 70)]), pod("b"), pod("c", gpus=[gpu(0, 90)])]
    assert [p.name for p in fleet_rows.ordered(pods, "temp")] == ["c", "a", "b"]
    assert [p.name for p in fleet_rows.ordered(pods, "temp", reverse=True)] == ["a", "c", "b"]
    states = [pod("x"), pod("y", state="offline"), pod("z", state="reconnecting")]
    assert [p.name for p in fleet_rows.ordered(states, "state")] == ["y", "z", "x"]


def test_filter_matches_name_gpu_and_session():
    p = pod("a100-west", gpus=[gpu(0)], sessions=[session("finetune")])
    assert fleet_rows.matches(p, "WEST") and fleet_rows.matches(p, "a100") and fleet_rows.matches(p, "tune")
    assert not fleet_rows.matches(p, "h100")


def test_header_sums_the_fleet():
    fleet = FleetSnapshot((pod("a", gpus=[gpu(0)]), pod("b", state="offline", uptime=None)))
    assert fleet_rows.header_text(fleet, sort="eta", reverse=False, filter_text="a", shown=1) == (
        "1/2 pods online · 1 GPU · $2.00/h · $3.00 spent   sorted by ETA · filter 'a': 1 shown")


def test_fleet_tones_are_all_themed():
    assert set(fleet_rows.TONES) <= set(TONES)


# ---------------------------------------------------------------------- log lines


def test_log_lines_follow_a_terminal_redraws_and_chunks():
    split = LineSplitter()
    assert split.feed("epoch 1\n 10%|█   | 1/10\r 20%|██") == ["epoch 1"]
    assert split.tail == " 20%|██"
    assert split.feed("  | 2/10\r100%|█████| 10/10\n\x1b[31mdone\x1b[0m\n") == ["100%|█████| 10/10", "done"]
    assert split.tail == ""


def test_tracebacks_oom_and_nan_loss_are_errors():
    tone = LineClassifier().tone
    lines = ["step 10 | loss 2.1", "Traceback (most recent call last):", '  File "train.py", line 9, in <module>',
             "    loss.backward()", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
             "step 11 | loss nan", "{'loss': nan, 'grad_norm': nan}", "UserWarning: TypedStorage is deprecated",
             "eval/error_rate 0.12", "[rank0]: NCCL error: unhandled system error"]
    assert [tone(line) for line in lines] == ["", "error", "error", "error", "error", "error", "error",
                                              "warning", "", "error"]


def test_spark_text_uses_a_fixed_range_when_given():
    assert spark_text([0, 50, 100], 3, 0, 100) == "▁▅█"
    assert spark_text([95, 96, 97], 3) == "▁▅█"  # own range: the shape
    assert spark_text([95, 96, 97], 3, 0, 100) == "███"  # fixed range: the level
    assert spark_text([1.0], 4) == "   ▄"


def test_history_grows_only_with_new_telemetry_and_restarts_with_a_new_run():
    h = History(samples=3)
    for t, util, step, loss in [(1, 10, 5, 3.0), (1, 20, 6, 2.9), (2, 30, 7, 2.8), (3, 40, 8, 2.7), (4, 50, 1, 3.1)]:
        h.feed(FleetSnapshot((pod(gpus=[gpu(0, util=util)], sampled_at=t,
                                  sessions=[session(step=step, loss=loss)]),)))
    assert h.gpu("a100", 0) == [30.0, 40.0, 50.0]
    assert h.loss("a100", "train") == [3.1]


def test_keymap_from_config_checks_ids():
    keymap, problems = keymap_from_config({"pod.teardown": "ctrl+t", "pod.kil": "x"})
    assert keymap == {"pod.teardown": "ctrl+t"}
    assert problems == ["keys: no key binding with id 'pod.kil'; did you mean 'pod.kill'?"]
    assert {"fleet.sort", "pod.attach", "pod.teardown", "app.help"} <= binding_ids()


def test_the_theme_pick_is_remembered_until_config_changes(tmp_path):
    state = tmp_path / "tui.json"
    assert chosen_theme(None, state) is None
    remember_theme("gpuctl-light", None, state)
    assert chosen_theme(None, state) == "gpuctl-light"
    assert chosen_theme("gpuctl-high-contrast", state) == "gpuctl-high-contrast"  # config edited since
    state.write_text("{not json")
    assert chosen_theme("x", state) == "x"
    remember_theme("gpuctl-dark", "x", state)
    assert json.loads(state.read_text()) == {"theme": "gpuctl-dark", "config_theme": "x"}


def test_checkpoint_lines_show_the_download_and_each_checkpoints_state():
    from sessions.checkpoints.listing import Checkpoint
    from tui.downloads import DONE, FAILED, RUNNING, DownloadState, checkpoint_lines

    listing = [Checkpoint("step_200.pt", "/w/step_200.pt", "file", 200, 2 << 30, 990.0, "writing", listed_at=1000.0),
               Checkpoint("step_100.pt", "/w/step_100.pt", "file", 100, 2 << 30, 400.0, verified_local=True,
                          listed_at=1000.0)]
    going = DownloadState("p", "train", RUNNING, "step_100.pt", 1 << 30, 2 << 30, started=__import__("time").monotonic())
    lines = checkpoint_lines(listing, going)
    assert lines[0] == ("↓ downloading step_100.pt: 1.0G/2.0G 50%", "running")
    assert lines[1] == ("step_200.pt    step 200    2.0G     10s ago  being written", "warning")
    assert lines[2][0].endswith("downloading 1.0G/2.0G 50%") and lines[2][1] == "running"
    done = DownloadState("p", "train", DONE, "step_100.pt", message="checkpoints/p/train/step_100.pt")
    assert checkpoint_lines(listing, done)[0] == (
        "✓ downloaded step_100.pt to checkpoints/p/train/step_100.pt (verified)", "ok")
    assert checkpoint_lines(listing, done)[2][0].endswith("downloaded, verified")
    failed = DownloadState("p", "train", FAILED, None, message="sha256 mismatch")
    assert checkpoint_lines([], failed)[0] == ("✗ download of the newest checkpoint failed: sha256 mismatch", "error")
    assert checkpoint_lines(None, None) == [("listing checkpoints…", "muted")]
    assert checkpoint_lines(None, None, error="Pod is offline.") == [("Pod is offline.", "warning")]
