"""Progress under the logging options people set, one quirk at a time.

The real runs behind these are in tests/data/runs/ (test_progress_runs.py); these pin
the single behaviours the matrix found, in the forms other versions print them.
"""

from __future__ import annotations

import pytest

from sessions.progress.tracker import parse_log

BAR = "\r{pct:3d}%|#    | {n}/{total} [00:{el:02d}<00:10, 10.00it/s{post}]"


@pytest.mark.parametrize("line", [
    "{'loss': 4.433, 'grad_norm': 0.57, 'learning_rate': 6.25e-06, 'epoch': 2.0}",            # transformers 4
    "{'loss': '4.433', 'grad_norm': '0.5703', 'learning_rate': '6.25e-06', 'epoch': '2'}",     # transformers 5
    "{'loss': '4.433', 'grad_norm': '0.5703', 'learning_rate': '6.25e-06', 'epoch': '2', "
    "'num_input_tokens_seen': 10240, 'train_runtime': '23.33', 'train_tokens_per_second': '438.9'}",
    "{'loss': 4.433, 'grad_norm': 0.57, 'learning_rate': 6.25e-06, 'entropy': 4.7, 'num_tokens': 6400.0, "
    "'mean_token_accuracy': 0.02, 'epoch': 2.0}",                                              # TRL
    '{"loss": "4.433", "learning_rate": 6.25e-06, "epoch": 2}',                                # JSON, strings
])
def test_trainer_dicts_give_the_loss_whatever_else_they_carry(line):
    p = parse_log(BAR.format(pct=50, n=80, total=160, el=8, post="") + "\n" + line + "\n")
    assert (p.step, p.loss, p.lr) == (80, 4.433, 6.25e-06)


def test_a_per_step_dict_with_train_runtime_is_not_the_closing_summary():
    """`include_num_input_tokens_seen` puts train_runtime in every step's dict."""
    line = ("{'loss': '4.433', 'epoch': '2', 'num_input_tokens_seen': 10240, 'train_runtime': '23.33', "
            "'train_tokens_per_second': '438.9'}\n")
    p = parse_log(line)
    assert (p.loss, p.step) == (4.433, None)
    summary = ("{'train_runtime': '23.33', 'train_samples_per_second': '27.43', 'train_steps_per_second': "
               "'3.429', 'train_loss': '4.473', 'epoch': '2', 'num_input_tokens_seen': 10240}\n")
    p = parse_log(line + summary)
    assert (p.loss, p.step, p.total, p.rate) == (4.433, 80, 80, 3.429)  # train_loss is a run average


@pytest.mark.parametrize("post", [", loss=0.353, lr=0.0003", ", loss=0.35294117647058826, lr=3e-4",
                                  ", loss=3.53e-01"])
def test_postfix_values_as_numbers_or_strings(post):
    assert parse_log(BAR.format(pct=50, n=5, total=10, el=1, post=post)).loss == pytest.approx(0.353, rel=1e-3)


def test_a_dict_glued_to_the_bars_last_redraw_is_read():
    """Redirected to a file, stdout is block-buffered: the Trainer's `{'loss': ...}` lands
    right after the bar's last redraw, no line break between (hf_epoch_eval.file.log)."""
    text = (BAR.format(pct=33, n=60, total=180, el=11, post="").replace("\r", "\r" + " " * 40)
            + "{'loss': '4.485', 'grad_norm': '0.774', 'learning_rate': '0.0003361', 'epoch': '1'}\n")
    p = parse_log(text)
    assert (p.step, p.loss, p.lr, p.epoch) == (60, 4.485, 0.0003361, 1.0)


NESTED = "\r{d}: {p:3d}%|#  | {n}/{t} [00:01<00:05, 10.00it/s{post}]"


@pytest.mark.parametrize("outer", ["Epoch", "outer"])
def test_a_bar_nested_in_an_outer_loop_counts_the_rounds_before(outer):
    """`for e in trange(3)` around `for b in tqdm(loader, leave=False)`: the inner bar
    restarts every round; the step is rounds done x its total + its count. An outer
    described as an epoch is known from the start, any other from the first round."""
    text = NESTED.format(d=outer, p=0, n=0, t=3, post="")
    for e in range(2):
        for b in range(51):
            text += "\n" + NESTED.format(d="Iteration", p=2 * b, n=b, t=50, post=f", loss={2 - (e * 50 + b) * 0.01:.4f}")
        text += "\r" + NESTED.format(d=outer, p=33 * (e + 1), n=e + 1, t=3, post="")
    for b in range(21):
        text += "\n" + NESTED.format(d="Iteration", p=2 * b, n=b, t=50, post=", loss=0.5")
    p = parse_log(text)
    assert (p.step, p.total, p.loss) == (120, 150, 0.5)
    early = parse_log(text[: text.index("| 10/50")] + "| 10/50 [00:01<00:05, 10.00it/s]")
    assert (early.step, early.total) == ((10, 150) if outer == "Epoch" else (10, 50))


def test_a_print_glued_to_a_bars_redraw_on_a_terminal_is_read():
    """`accelerator.print` while tqdm draws on the same terminal (accelerate_tqdm.tty.log)."""
    text = ("\rTraining:  94%|#########4| 180/192 [00:24<00:02,  5.98it/s]epoch 2 step 180: loss 0.0192\r"
            "\rTraining:  94%|#########4| 181/192 [00:24<00:02,  5.98it/s]")
    p = parse_log(text)
    assert (p.step, p.total, p.loss) == (181, 192, 0.0192)


def test_a_bar_cut_at_an_80_column_terminal_is_read():
    """Lightning's tqdm bar at 80 columns loses the end of its postfix, `]` included
    (lightning_tqdm_narrow.tty.log); the value cut in two is not taken."""
    text = ("\rEpoch 2: 100%|█| 40/40 [00:06<00:00,  5.79it/s, train_loss=0.0161, val_loss=0.0\n"
            "\rEpoch 2:  50%|█| 20/40 [00:03<00:03,  5.79it/s, train_loss=0.0\n")
    p = parse_log(text[: text.index("\n") + 1])
    assert (p.step, p.loss) == (120, 0.0161)
    assert parse_log(text).loss == 0.0161 and parse_log(text).step == 100


def test_lightnings_reset_redraw_under_the_old_epoch_is_not_a_restart():
    """Before each epoch Lightning resets its bar, drawn once more as `Epoch 0: 0/40`
    (lightning_tqdm_narrow.file.log). The pace counts every epoch's clock, validation
    included (it runs under the training bar: epoch 0's clock ends at 16 s, not 8), each
    whole-second reading with the half second it cuts off on average (16.5 + 8.5 s)."""
    bar = "\rEpoch {e}: {p:3d}%|#  | {n}/40 [00:{el:02d}<00:00,  5.00it/s, train_loss=0.5]"
    text = "".join(bar.format(e=0, p=n * 2, n=n, el=n // 5) for n in range(41))
    text += bar.format(e=0, p=100, n=40, el=16) + "\n"
    text += bar.format(e=0, p=0, n=0, el=0) + "".join(bar.format(e=1, p=n * 2, n=n, el=n // 5) for n in range(41))
    p = parse_log(text)
    assert (p.step, p.rate, p.rate_unit) == (80, pytest.approx(80 / 25, rel=0.02), "derived")


def test_a_bar_after_other_brackets_or_drawn_up_to_its_count_is_read():
    """The meter is looked for at the word before each ` [` (formats.tqdm_meter), not
    only the first: a logger's `[time] [INFO]` comes first; a custom `bar_format` may
    draw the bar right up to its count (`|9/20 [`)."""
    p = parse_log("[2024-05-01 10:00:00] [INFO] train:  45%|####5 | 9/20 [00:01<00:01,  8.12it/s, loss=0.3]\n")
    assert (p.step, p.total, p.loss) == (9, 20, 0.3)
    p = parse_log("train:  45%|####5|9/20 [00:01<00:01,  8.12it/s, loss=0.3]\n")
    assert (p.step, p.total, p.loss) == (9, 20, 0.3)
    assert parse_log("[a] [b] [c] nothing here [d]\n").step is None
