"""Progress parsing: real captured logs first, then the quirks one at a time.

The table runs over tests/data/logs/ (README there: which files are captured from real
frameworks and which are rebuilt from their print statements). Rates are compared
loosely where they are a judgement (the median of recent printed rates), exactly where
they are arithmetic on printed numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions.progress.tracker import Progress, ProgressTracker, parse_file, parse_log

LOGS = Path(__file__).parent / "data" / "logs"
approx = pytest.approx


def read(name: str) -> str:
    return (LOGS / name).read_bytes().decode("utf-8", errors="replace")


# name, format, step, total, loss, rate (steps/s), rate_unit, extra fields
CASES = [
    # captured: tqdm, HF Trainer (map/eval/shard bars around the training bar), resume
    ("tqdm_plain.tty.log", "tqdm", 60, 60, 1.32, approx(19.7, rel=0.05), "it/s", {"lr": 3e-4, "eta_s": 0.0}),
    ("tqdm_plain.file.log", "tqdm", 60, 60, 1.32, approx(19.7, rel=0.05), "it/s", {"lr": 3e-4}),
    ("tqdm_slow.tty.log", "tqdm", 6, 6, None, approx(1 / 1.30, rel=0.01), "s/it", {}),
    ("tqdm_slow.file.log", "tqdm", 6, 6, None, approx(1 / 1.30, rel=0.01), "s/it", {}),
    ("hf_trainer.tty.log", "hf_trainer", 40, 40, 4.499, approx(10.5, rel=0.05), "it/s",
     {"lr": 1.25e-05, "epoch": 0.4, "eta_s": 0.0}),
    ("hf_trainer.file.log", "hf_trainer", 40, 40, 4.499, approx(10.5, rel=0.05), "it/s",
     {"lr": 1.25e-05, "epoch": 0.4}),
    # resumed at 20 of 50: the bar printed 131.92 it/s; the pace after the jump is ~7/s
    ("hf_resume.tty.log", "hf_trainer", 50, 50, 4.501, approx(7.25, rel=0.01), "derived", {"epoch": 0.5}),
    ("hf_resume.file.log", "hf_trainer", 50, 50, 4.501, approx(7.25, rel=0.01), "derived", {"lr": 1e-05}),
    # captured: Lightning bars count batches per epoch; 3 epochs x 20 batches
    ("lightning_tqdm.tty.log", "lightning", 60, None, 0.0281, approx(23.0, rel=0.05), "it/s", {"epoch": 3.0}),
    ("lightning_tqdm.file.log", "lightning", 60, None, 0.0281, approx(22.5, rel=0.05), "it/s", {"epoch": 3.0}),
    ("lightning_rich.tty.log", "rich", 60, 60, 0.028, approx(23.3, rel=0.05), "it/s", {"epoch": 3.0, "eta_s": 0.0}),
    ("lightning_rich.file.log", "rich", 60, 60, 0.028, approx(22.57), "it/s", {"epoch": 3.0}),
    # captured: Keras 3, 3 epochs x 16 steps, ~35 ms/step
    ("keras.tty.log", "keras", 48, 48, 0.7089, approx(1000 / 35, rel=0.05), "s/it", {"epoch": 3.0}),
    ("keras.file.log", "keras", 48, 48, 0.7938, approx(1000 / 35, rel=0.05), "s/it", {"epoch": 3.0}),
    # reconstructed from the frameworks' print statements
    ("keras2.log", "keras", 60, 60, 0.7181, approx(1000 / 62), "s/it", {"epoch": 3.0}),
    ("nanogpt.log", "nanogpt", 201, None, 2.5936, approx(1000 / 251, rel=0.02), "s/it", {}),
    ("llmc.log", "torchrun", 60, 200, 7.95, approx(1.0, rel=0.02), "s/it",
     {"lr": 6e-4, "tokens_per_s": approx(524288, rel=0.02), "eta_s": approx(140, rel=0.02)}),
    ("torchtitan.log", "torchrun", 80, None, 4.8, approx(1 / 6.2, rel=0.02), "derived",
     {"tokens_per_s": approx(1321, abs=31)}),
    ("deepspeed_pipe.log", "deepspeed", 300, None, 3.9, approx(1 / 0.512, rel=0.02), "s/it", {}),
    ("deepspeed_engine.log", "deepspeed", 150, None, 7.9, approx(10 / 2.15, rel=0.02), "derived", {"lr": 1e-4}),
    ("megatron.log", "megatron", 200, 317892, 6.0, approx(1000 / 14287.5, rel=0.02), "s/it", {"lr": 2.4e-4}),
    ("jsonl.log", "jsonl", 96, 1000, 2.25, approx(1 / 0.334, rel=0.02), "s/it",
     {"lr": 3e-4, "tokens_per_s": approx(98000, rel=0.02), "epoch": 0.2375}),
]


@pytest.mark.parametrize("name,fmt,step,total,loss,rate,unit,extra", CASES, ids=[c[0] for c in CASES])
def test_logs(name, fmt, step, total, loss, rate, unit, extra):
    p = parse_log(read(name))
    assert (p.format, p.step, p.total, p.rate_unit) == (fmt, step, total, unit)
    assert p.loss == (approx(loss) if loss is not None else None)
    assert p.rate == rate
    for key, want in extra.items():
        assert getattr(p, key) == want, key


def test_parse_file_reads_in_pieces_to_the_same_result():
    for name in ("hf_trainer.tty.log", "keras.tty.log", "deepspeed_engine.log"):
        assert parse_file(LOGS / name) == parse_log(read(name))


def test_every_log_file_is_in_the_table():
    assert {c[0] for c in CASES} == {p.name for p in LOGS.glob("*.log")}


@pytest.mark.parametrize("name", [c[0] for c in CASES])
@pytest.mark.parametrize("size", [1, 7, 333])
def test_chunks_cut_anywhere_give_the_same_reading(name, size):
    """Log deltas end mid-line, mid-number, mid-escape: the reading must not change."""
    text = read(name)
    if size == 1:
        text = text[-3000:]  # character by character: only the tail, to stay fast
    whole = parse_log(text)
    tracker = ProgressTracker()
    for i in range(0, len(text), size):
        tracker.feed(text[i:i + size], now=0.0)
    p = tracker.progress()
    assert (p.format, p.step, p.total, p.loss, p.lr, p.epoch) == (
        whole.format, whole.step, whole.total, whole.loss, whole.lr, whole.epoch)


# ------------------------------------------------------------------ single quirks

BAR = "\r{pct:3d}%|{bar:<10}| {n}/{total} [{el}<{rem}, {rate}]"


def bar(n: int, total: int, rate: str, el: str = "00:01", rem: str = "00:05") -> str:
    return BAR.format(pct=100 * n // total, bar="#" * (10 * n // total), n=n, total=total,
                      rate=rate, el=el, rem=rem)


def test_to_json_has_exactly_the_contract_keys():
    assert list(Progress().to_json()) == [
        "format", "step", "total", "rate", "rate_unit", "loss", "lr", "tokens_per_s", "epoch", "eta_s",
        "slowest_rank", "ranks", "recent_rate"]
    assert set(Progress().to_json().values()) == {None}


def test_s_per_it_is_converted_to_steps_per_second():
    p = parse_log(bar(3, 6, "2.00s/it", rem="00:06"))
    assert (p.rate, p.rate_unit, p.step, p.total, p.eta_s) == (0.5, "s/it", 3, 6, 6.0)


def test_eta_is_computed_when_the_bar_does_not_say():
    p = parse_log(bar(10, 40, "5.00it/s", rem="?"))
    assert p.eta_s == approx(6.0)


@pytest.mark.parametrize("line,tokens", [
    ("step 10 | loss 2.5 | lr 3.0e-04 | tok/s 123,456", 123456),
    ("step: 10  loss:  2.5000  memory: 63.25GiB(79.96%)  tps: 1,234,567  mfu: 40.1%", 1234567),
    ("step 10/100 | train loss 2.5 | (101.20 ms | 518_823 tok/s)", 518823),
    ("step 10 | loss 2.5 | 12.5k tokens/s", 12500),
])
def test_tokens_per_second_with_thousands_separators(line, tokens):
    assert parse_log(line + "\n").tokens_per_s == tokens


def test_zero_based_steps_count_completed_steps():
    p = parse_log("step 0 | loss 3.0 | lr 1e-3\nstep 1 | loss 2.9 | lr 1e-3\nstep 2 | loss 2.8 | lr 1e-3\n")
    assert (p.format, p.step, p.loss) == ("torchrun", 3, 2.8)
    # 1-based loops are taken as printed
    assert parse_log("step 1/10 | loss 3.0\nstep 2/10 | loss 2.9\n").step == 2
    # nanoGPT's iter N is always the (N+1)th completed step, even if the log starts later
    assert parse_log("iter 500: loss 2.1, time 250.00ms, mfu 30.00%\n").step == 501


def test_resumed_bar_pace_comes_from_step_deltas_over_time():
    """HF resume: the bar shows 0, then jumps to the resume step with an it/s counting
    the skipped steps, which tqdm's smoothing keeps inflated for a long while."""
    t = ProgressTracker()
    t.feed(bar(0, 100, "?it/s", el="00:00", rem="?"), now=1000.0)
    t.feed(bar(20, 100, "19.80it/s", el="00:01", rem="00:04"), now=1001.0)
    for k in range(1, 8):  # then one step every 2 s while the printed rate decays slowly
        t.feed(bar(20 + k, 100, f"{19.8 * 0.8 ** k:.2f}it/s", el=f"00:{1 + 2 * k:02d}", rem="00:04"),
               now=1001.0 + 2 * k)
    p = t.progress()
    assert (p.step, p.rate_unit) == (27, "derived")
    assert p.rate == approx(0.5)
    assert p.eta_s == approx((100 - 27) / 0.5)


def test_resumed_bar_in_a_file_uses_the_bars_own_clock():
    text = bar(0, 100, "?it/s", el="00:00", rem="?") + "".join(
        bar(n, 100, "30.0it/s", el=f"00:{(n - 30) * 2:02d}") for n in range(30, 40))
    p = parse_log(text)
    assert (p.step, p.rate_unit, p.rate) == (39, "derived", approx(0.5))


def test_a_second_run_appended_to_the_same_log_is_read_afresh():
    """A crash, then a resumed run appending to the same tmux log: the bar goes back to
    0 and jumps; the first run's rates and start must not hide that jump."""
    first = "".join(bar(n, 100, "1.00it/s", el=f"00:{n:02d}") for n in range(0, 25))
    second = bar(0, 100, "?it/s", el="00:00", rem="?") + "".join(
        bar(n, 100, "40.0it/s", el=f"00:{(n - 20) * 2:02d}") for n in range(20, 30))
    p = parse_log(first + "\nTraceback (most recent call last):\n" + second)
    assert (p.step, p.rate_unit, p.rate) == (29, "derived", approx(0.5))


def test_a_fresh_fast_bar_is_not_mistaken_for_a_resume():
    text = bar(0, 1000, "?it/s", el="00:00", rem="?") + "".join(
        bar(n, 1000, "100.0it/s", el=f"00:{n // 100:02d}") for n in range(10, 600, 10))
    p = parse_log(text)
    assert (p.rate, p.rate_unit) == (approx(100.0), "it/s")


def test_finished_log_rate_is_the_recent_pace_not_the_last_outlier():
    text = "".join(bar(n, 20, "10.00it/s") for n in range(1, 20)) + bar(20, 20, "2.10it/s")
    assert parse_log(text).rate == approx(10.0)


def test_lightning_epoch_bar_gives_the_global_step():
    line = "\rEpoch 2:  50%|#####     | 10/20 [00:01<00:01,  9.50it/s, v_num=0, train_loss=0.512, val_loss=0.600]"
    p = parse_log(line)
    assert (p.format, p.step, p.total, p.epoch, p.loss, p.eta_s) == ("lightning", 50, None, 2.5, 0.512, None)


def test_a_loops_one_based_epoch_bar():
    p = parse_log("\repoch 2/5: 100%|##########| 100/100 [00:10<00:00, 9.9it/s, loss=0.4]")
    assert (p.step, p.total, p.epoch) == (200, 500, 2.0)


def test_dataset_map_bar_is_not_training():
    text = ("\rMap:   0%|          | 0/400 [00:00<?, ? examples/s]"
            "\rMap: 100%|##########| 400/400 [00:00<00:00, 23431.21 examples/s]\n"
            "\rTokenizing train: 100%|##########| 50/50 [00:02<00:00, 20.1it/s]\n")
    assert parse_log(text) == Progress()


def test_evaluation_bar_mid_run_does_not_take_the_step():
    text = (bar(10, 40, "5.00it/s") + "\n"
            + "".join(bar(k, 12, "60.0it/s", el="00:00", rem="00:00") for k in range(0, 13)) + "\n"
            + "\rValidation DataLoader 0: 100%|##########| 200/200 [00:01<00:00, 150.0it/s]\n")
    p = parse_log(text)
    assert (p.step, p.total, p.rate) == (10, 40, 5.0)


def test_evaluation_lines_are_not_training_steps():
    text = ("iter 240: loss 2.0000, time 250.00ms, mfu 30.00%\n"
            "step 250: train loss 1.9000, val loss 2.1000\n")
    p = parse_log(text)
    assert (p.step, p.loss) == (241, 2.0)


def test_non_tty_log_with_only_the_final_state():
    p = parse_log("100%|##########| 60/60 [00:03<00:00, 19.74it/s]\n")
    assert (p.step, p.total, p.rate, p.rate_unit, p.eta_s) == (60, 60, 19.74, "it/s", 0.0)


def test_ansi_codes_and_cursor_moves_are_dropped():
    line = ("\r\x1b[2KEpoch 0/2  \x1b[38;5;56m━━━━\x1b[0m\x1b[38;5;237m╺━━━━━━━━\x1b[0m 4/20 "
            "\x1b[2m0:00:00 • 0:00:01\x1b[0m \x1b[2;4m23.24it/s\x1b[0m \x1b[3mtrain_loss: 0.345\x1b[0m")
    p = parse_log(line)
    assert (p.format, p.step, p.total, p.loss, p.rate) == ("rich", 4, 60, 0.345, 23.24)


def test_trainer_dict_cut_mid_number_is_read_whole():
    t = ProgressTracker()
    t.feed("{'loss': '4.5", now=0.0)
    t.feed("53', 'grad_norm': '1.481', 'learning_rate': '0.00045', 'epoch': '0.05'}\n", now=1.0)
    p = t.progress()
    assert (p.format, p.loss, p.lr, p.epoch) == ("hf_trainer", 4.553, 0.00045, 0.05)


def test_bar_state_in_an_unterminated_tail_is_read():
    t = ProgressTracker()
    t.feed(bar(5, 40, "10.33it/s"), now=0.0)  # tqdm's latest state has no \r after it yet
    assert t.progress().step == 5
    t.feed(bar(7, 40, "10.65it/s")[:20], now=0.1)  # half a redraw: still the old state
    assert t.progress().step == 5


def test_rate_is_derived_from_steps_over_arrival_time():
    t = ProgressTracker()
    for k in range(1, 11):
        t.feed(f"step {k} | loss {3 - k * 0.1:.2f} | lr 1e-4\n", now=100.0 + 4 * k)
    p = t.progress()
    assert (p.step, p.rate, p.rate_unit) == (10, approx(0.25), "derived")
    assert parse_log("step 1 | loss 3.0\nstep 2 | loss 2.9\n").rate is None  # a file has no clock


def test_stalled_after_the_step_stops_advancing():
    t = ProgressTracker()
    assert not t.stalled(now=10_000.0, after_s=60)  # nothing known is not stalled
    t.feed("step 1 | loss 3.0\n", now=0.0)
    t.feed("step 2 | loss 2.9\n", now=10.0)
    t.feed("some other line\nWARNING: still alive\n", now=50.0)
    assert not t.stalled(now=60.0, after_s=60)
    assert t.stalled(now=70.0, after_s=60)
    t.feed("step 3 | loss 2.8\n", now=80.0)
    assert not t.stalled(now=100.0, after_s=60)


def test_a_finished_run_is_not_stalled():
    t = ProgressTracker()
    t.feed(bar(40, 40, "5.00it/s", rem="00:00") + "\n", now=0.0)
    assert not t.stalled(now=3600.0, after_s=60)


def test_per_epoch_steps_in_plain_lines():
    p = parse_log("Epoch [1/10], Step [100/600], Loss: 0.2345\nEpoch [2/10], Step [300/600], Loss: 0.1234\n")
    assert (p.step, p.total, p.epoch, p.loss) == (900, 6000, 1.5, 0.1234)


def test_user_pattern_reads_a_custom_format_and_wins():
    pattern = r"it=(?P<step>\d+)/(?P<total>\d+) L=(?P<loss>[\d.]+) sps=(?P<rate>[\d.]+)"
    t = ProgressTracker(pattern)
    t.feed("boot\nit=5/10 L=0.25 sps=2.5\n", now=0.0)
    p = t.progress()
    assert (p.format, p.step, p.total, p.loss, p.rate, p.eta_s) == ("user", 5, 10, 0.25, 2.5, 2.0)
    # a line both formats read is read with the user's pattern
    t = ProgressTracker(r"step (?P<step>\d+)")
    t.feed("step 7 | loss 1.0\n", now=0.0)
    assert (t.progress().format, t.progress().step) == ("user", 7)


def test_empty_and_unrelated_text():
    assert parse_log("") == Progress()
    assert parse_log("Downloading shards: 100%|##########| 2/2 [00:03<00:00, 1.5s/it]\nhello\n") == Progress()
    assert parse_log("The Trainer logs `{'loss': ...}` dicts.\n{'model_type': 'gpt2', 'n_layer': 2}\n") == Progress()
