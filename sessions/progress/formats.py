"""The line matchers behind progress parsing: one compiled regex per format, no state.

Why a module of its own: `sessions.progress.tracker` holds the stateful tracker (which bar is
the training bar, resumed runs, rates over time); this module only answers "what does
this one line say". Keeping the patterns here, next to the helpers that turn their
text into numbers, puts every format's quirks in one place to read and audit.

The patterns follow what the frameworks really print; `tests/data/logs/` holds real
captures (and reconstructions, with the source line each follows). Speed matters: a
busy pod's log is parsed line by line, so the common case (a tqdm redraw) costs one
regex match at the word before its ` [`, the rarer formats hide behind one literal-only
prefilter, and key/value metrics are matched where `str.find` saw their key.
"""

from __future__ import annotations

import re
from typing import Any


def _rx(pattern: str) -> re.Pattern[str]:
    """Compile with re.ASCII: `\\d`, `\\s`, `\\w` become table lookups instead of a
    Unicode database call per character (about 4% of all instructions on the bench's
    mixed log); logs print their numbers and keys in ASCII anyway."""
    return re.compile(pattern, re.ASCII)


# --------------------------------------------------------------------- terminal noise

ANSI_RE = _rx(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, erase line, cursor moves (Rich, tqdm)
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|[()][0-9A-Za-z]|[@-Z\\-_])"  # charset selection, other two-byte escapes
)
"""Escape sequences to drop before matching: Rich wraps every field in colour codes.
The pattern starts with the literal ESC, so the regex engine skips plain text fast."""


def strip_controls(text: str) -> str:
    """`text` without ANSI escapes. The `in` test skips the work for the usual chunk.

    Backspaces stay: Keras ends each redraw with a run of them before its `\r`, where
    they do no harm (no pattern reads past a value into them), and removing them costs
    as much as everything else a Keras line needs."""
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    return text

# ------------------------------------------------------------------------ tqdm bars

TQDM_RE = _rx(
    r"(?P<n>\d+)(?:/(?P<total>\d+|\?))?(?P<unit>[A-Za-z]*) \["
    r"(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:]+|\?))?,\s*"
    r"(?P<rate>\d+(?:\.\d+)?[kMG]?|\?)\s?(?P<rate_unit>[^\s,\]]*)"
    r"(?P<postfix>[^\]]*)(?:\]|$)"
)
"""A tqdm meter: `45%|████▌ | 9/20 [00:01<00:01,  8.12it/s, loss=0.3]`, also without a
total (`9it [00:01, 8.12it/s]`) and with a `?` total (Lightning's `0/?`). The text
before the match is the description plus percentage and bar. A line that ends
without its `]` was cut to the terminal's width (tqdm drops what does not fit: an
80-column Lightning bar loses the end of its postfix)."""

COUNT_WORD_RE = _rx(r"\d+(?:/(?:\d+|\?))?[A-Za-z]*$")
"""A tqdm meter's `n/total unit` at the end of the text before a ` [` (searched with
that ` [` as the end)."""


def tqdm_meter(line: str, i: int) -> re.Match[str] | None:
    """The tqdm meter in `line`, whose first ` [` is at `i` (`line.find(" [")`).

    A meter's `n/total unit` ends right at a ` [` and holds no space, so for each ` [`
    in turn the word before it is searched for where such a count starts
    (`COUNT_WORD_RE`, a bar drawn up to its count: `|9/20 [`) and `TQDM_RE` is tried
    there once: what `TQDM_RE.search` would find, for one attempt per ` [` instead of
    one per character (a Keras `[====>...] - ETA` line or a logger's `[INFO]
    [file.py:12]` cost a search of the whole line before)."""
    while i >= 0:
        c = line[i - 1] if i else " "
        if c.isalnum() or c == "?":  # a count ends in its unit, its total or `?` (`[INFO] [` does not)
            w = COUNT_WORD_RE.search(line, line.rfind(" ", 0, i) + 1, i)
            if w is not None:
                m = TQDM_RE.match(line, w.start())
                if m is not None:
                    return m
        i = line.find(" [", i + 1)
    return None


TRAIN_RATE_UNITS = frozenset(
    f"{a}/{b}"
    for unit in ("it", "step", "steps", "batch", "batches", "iter")
    for a, b in ((unit, "s"), ("s", unit))
)
"""Rate units a training bar shows. `examples/s` (datasets `map`), `ba/s`, `B/s` and
friends belong to data preparation, downloads and uploads, never to training."""

NON_TRAINING_DESC_RE = _rx(
    r"(?i)(?:^|[^a-z])(?:map|filter|tokeni[sz]|shard|writ|sav|load|download|upload|fetch|"
    r"eval|valid|test|predict|sanity|generat|infer|sampl|preprocess|convert|extract|"
    r"resolv|encod|decod|index|hash|verif|copy|pack|unpack|checkpoint)"
)
"""Descriptions of bars that are not the training loop: dataset `map`, shard writing,
evaluation and validation loops, Lightning's sanity check."""

EPOCH_DESC_RE = _rx(r"(?i)\bepoch\s*(\d+)(?:\s*/\s*(\d+))?")
"""`Epoch 3` (Lightning's tqdm bar, 0-based) or `epoch 2/10` in a bar description:
such bars count batches within one epoch."""


def bar_description(left: str) -> str:
    """The description of a tqdm bar from the text before its `n/total` field.

    Args:
        left: the line up to the match of `TQDM_RE` (`"Epoch 0:  10%|██   | "`).

    Returns:
        The description without percentage, bar or trailing colon (`"Epoch 0"`).
    """
    j = left.find("|")
    if j >= 0:
        left = left[:j].rstrip()
        if left.endswith("%"):
            left = left[:-1].rstrip("0123456789. ")
    return left.rstrip(": ").strip()


# -------------------------------------------------------------- Rich and Keras bars

RICH_RE = _rx(
    r"^(?P<desc>.*?)\s*[━╸╺╾╼]+\s+(?P<n>\d+)/(?P<total>\d+|\?)\s+"
    r"(?P<elapsed>[\d:-]+)\s+•\s+(?P<remaining>[\d:-]+)\s+"
    r"(?P<rate>\d+(?:\.\d+)?)(?P<rate_unit>it/s|s/it)(?P<postfix>.*)$"
)
"""Lightning's RichProgressBar: `Epoch 2/2  ━━━━╺━━ 15/20 0:00:00 • 0:00:01 23.33it/s
train_loss: 0.047`. Its description says `Epoch k/K` with K = max_epochs - 1."""

KERAS_RE = _rx(
    r"^\s*(?P<n>\d+)/(?P<total>\d+) (?:[━]+|\[[=>.]*\])?\s*(?P<rest>.*)$"
)
"""A Keras `fit` progress line: Keras 3 `16/16 ━━━━ 1s 35ms/step - loss: 0.69`,
Keras 2 `45/100 [====>....] - ETA: 2s - loss: 0.69`, or verbose=2 `16/16 - 1s - ...`."""

KERAS_PER_STEP_RE = _rx(r"(?P<v>\d+(?:\.\d+)?)(?P<u>us|µs|ms|s)/step")
KERAS_EPOCH_RE = _rx(r"^Epoch (?P<e>\d+)/(?P<of>\d+)\s*$")
"""The `Epoch 3/10` line Keras prints (1-based) before each epoch's bar."""

# ------------------------------------------------------ key/value and dict lines

PREFILTER_RE = _rx(
    "━|╸|╺|\\] - |Epoch |\\{['\"]|step|Step|STEP|iter|Iter|ITER|loss|Loss|LOSS"
)
"""One cheap pass that says which (rarer) matcher a non-tqdm line deserves, if any, by
the first character of its match (`PREFILTER_KIND`). Only plain literals, no groups,
no IGNORECASE: then the regex engine scans for their first characters in C."""

PREFILTER_KIND = {"━": "drawn", "╸": "drawn", "╺": "drawn", "]": "drawn", "E": "drawn",
                  "{": "dict", "s": "kv", "S": "kv", "i": "kv", "I": "kv",
                  "l": "loss", "L": "loss"}

# The key/value patterns below run on the lower-cased line (no IGNORECASE, which
# would defeat the engine's literal scans).

STEP_RE = _rx(
    r"(?P<key>global[_ ]step|steps?|iter(?:ation)?)(?![\w/])"
    r"\s*[:=#]?\s*\[?\s*(?P<step>\d+)(?:\s*/\s*(?P<total>\d+))?"
)
"""`step 120`, `step: 120`, `step=120`, `step [120/5000]`, `iter 120`, `iteration 120/
5000`, `global_step=120` (not `micro_step=`, `warmup_steps:`, `max_steps=`)."""

_NUM = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+|nan|inf)"
_THOUSANDS = r"\d{1,3}(?:[,_' ]\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"

# Each metric pattern is matched *at* a place where `str.find` found its key, after a
# check of the character before it (`key_match`): no pattern opens with a lookbehind
# or a `search`, which on a 400-character Megatron line would try every position.

LOSS_AT_RE = _rx(r"loss(?:_step)?(?![\w/])\s*[:=]?\s*(?P<v>" + _NUM + r")")
"""A training loss at its key (`loss 2.3`, `loss: 2.3`, `loss=2.3`, `lm loss: 5.9e+00`,
`train_loss=0.3`); `loss_value` checks what precedes it."""

LOSS_PREFIXES_OK = ("train_", "train/", "training_", "training/")
"""Joined to `loss` by `_` or `/`, only these name the training loss (not `val_loss`)."""
LOSS_WORDS_NOT = ("val ", "eval ", "test ", "valid ", "validation ")
"""`val loss 2.1` and its kind report evaluation."""

EVAL_LINE_RE = _rx(
    r"\b(?:val|eval|valid|validation|test)[_ ]?loss|\b(?:validat|eval)\w*\s+step"
)
"""A line reporting evaluation (nanoGPT's `step 250: train loss X, val loss Y`,
torchtitan's `validate step: 40  loss: ...`): its step and "train loss" come from an
evaluation pass, not from an optimizer step."""

LR_AT_RE = _rx(r"(?:lr|learning[_ ]rate)(?![\w/])\s*[:=]?\s*\[?\s*(?P<v>" + _NUM + r")")
TOKENS_AT_RE = _rx(
    r"(?:tok(?:en)?s?/s(?:ec)?|tokens?[_ ]per[_ ]s(?:ec(?:ond)?)?|tps|wps|tok_per_sec)"
    r"(?![\w/])\s*[:=]?\s*(?P<v>" + _THOUSANDS + r")\s*(?P<k>[km](?!\w))?"
)
TOKENS_AFTER_RE = _rx(
    r"(?P<v>" + _THOUSANDS + r")\s*(?P<k>[km])?\s*tok(?:en)?s?/s(?:ec)?(?![\w])"
)
"""Tokens per second with optional thousands separators or k/M suffix, the key before
(`tok/s 123,456`, `tps: 1,234`) or after the value (`518,823 tok/s`, `12.3k tokens/s`)."""

TIME_AT_RE = _rx(
    r"(?:time per iteration|time|dt)\s*(?:\((?P<u1>ms|s)\))?\s*[:=]?\s*(?P<v>\d+(?:\.\d+)?)"
    r"\s*(?P<u2>ms|s)?(?![\w/])"
)
"""Time per step at its key: nanoGPT `time 45.20ms`, DeepSpeed `iter time (s): 0.512`,
`step_time: 0.3`, Megatron `elapsed time per iteration (ms): 14287.5`."""
PAREN_MS_RE = _rx(r"\((?P<v>\d+(?:\.\d+)?)\s*ms\b")
"""llm.c's step time: `| (1010.52 ms | 518823 tok/s)`."""

RATE_RE = _rx(r"(?P<v>\d+(?:\.\d+)?)\s*(?:it|steps?)/s(?![\w/])")
EPOCH_AT_RE = _rx(r"epoch\s*[:=]?\s*\[?\s*(?P<v>\d+(?:\.\d+)?)")
EPOCH_OF_RE = _rx(r"epoch\s*[:=]?\s*\[?\s*(?P<e>\d+)\s*/\s*(?P<of>\d+)")
"""`Epoch [2/10]` beside `Step [100/600]`: the step counts within the epoch."""


def search_near(rx: re.Pattern[str], low: str, key: str, back: int, ahead: int = 48) -> re.Match[str] | None:
    """`rx.search` confined to a window around each occurrence of `key`, first one first,
    for the few patterns whose match starts before their key (a value before `tok/s`)."""
    i = low.find(key)
    while i >= 0:
        m = rx.search(low, i - back if i > back else 0, i + len(key) + ahead)
        if m is not None:
            return m
        i = low.find(key, i + 1)
    return None


def key_match(low: str, key: str, rx: re.Pattern[str], joined_ok: tuple[str, ...] = ()) -> re.Match[str] | None:
    """`rx.match` at the first occurrence of `key` that starts a word of its own.

    Args:
        low: the lower-cased line.
        key: the literal the pattern starts with.
        rx: the pattern, matched at the key.
        joined_ok: endings of the text before the key that may run into it anyway
            (`step_` before `time`).
    """
    i = low.find(key)
    while i >= 0:
        c = low[i - 1] if i else " "
        if not (c.isalnum() or c in "_/.") or (joined_ok and low.endswith(joined_ok, 0, i)):
            m = rx.match(low, i)
            if m is not None:
                return m
        i = low.find(key, i + 1)
    return None


def loss_value(low: str) -> float | None:
    """The training loss in a lower-cased line or postfix, never an evaluation loss."""
    i = low.find("loss")
    while i >= 0:
        c = low[i - 1] if i else " "
        if c in "_/":
            ok = low.endswith(LOSS_PREFIXES_OK, 0, i)
        else:
            ok = not c.isalnum() and not low.endswith(LOSS_WORDS_NOT, 0, i)
        if ok:
            m = LOSS_AT_RE.match(low, i)
            if m is not None:
                return to_float(m["v"])
        i = low.find("loss", i + 4)
    return None


def is_eval_line(low: str) -> bool:
    """Whether a lower-cased line reports evaluation rather than training."""
    return ("val" in low and search_near(EVAL_LINE_RE, low, "val", 2, 24) is not None) or (
        "test" in low and search_near(EVAL_LINE_RE, low, "test", 1, 24) is not None)


def step_match(low: str) -> re.Match[str] | None:
    """The first step report of a lower-cased line: `STEP_RE` matched where its key
    starts a word (`global_step` and `/global_step` yes, `micro_step` or
    `warmup_steps` no)."""
    best = None
    for key in ("step", "iter"):
        i = low.find(key)
        while i >= 0 and (best is None or i < best.start()):
            j = i - 7 if key == "step" and low.endswith(("global_", "global "), 0, i) else i
            c = low[j - 1] if j else " "
            if not (c.isalnum() or c in "_."):
                m = STEP_RE.match(low, j)
                if m is not None:
                    best = m
                    break
            i = low.find(key, i + 1)
    return best


TOKEN_RATE_WORDS = ("tok/s", "toks/s", "token/s", "tokens/s")
"""How `TOKENS_AFTER_RE` ends: a value before one of these is a token rate."""


NUMBER_CHARS = frozenset("0123456789.,_' km")
"""What the value before a token rate (`TOKENS_AFTER_RE`, separators and suffix
included) can be made of."""


def tokens_after(low: str) -> re.Match[str] | None:
    """`TOKENS_AFTER_RE` (`518,823 tok/s`) where an occurrence of `tok` starts a token
    rate (Megatron's `consumed tokens: 314572` is not one), searched only from where the
    run of number characters before it starts: a search over the window before it cost
    more than the rest of that line (a backtracking attempt at every digit)."""
    i = low.find("tok")
    while i >= 0:
        if low.startswith(TOKEN_RATE_WORDS, i):
            j = i
            while j > 0 and low[j - 1] in NUMBER_CHARS:
                j -= 1
            m = TOKENS_AFTER_RE.search(low, max(j, i - 24), i + 15)
            if m is not None:
                return m
        i = low.find("tok", i + 1)
    return None


Metrics = tuple[float | None, float | None, float | None, tuple[str, str] | None, float | None]
"""(loss, lr, tokens/s, rate as printed, epoch), None where a line does not say."""


def line_metrics(low: str) -> Metrics:
    """(loss, lr, tokens/s, rate, epoch) from a lower-cased text, None where absent; the
    rate as printed, `(text, "it/s" | "s/it")`. Used on key/value lines and postfixes.
    Each key is tested with `in` first: most lines name only two or three of them."""
    lr = tokens = rate = epoch = None
    loss = loss_value(low) if "loss" in low else None
    if "lr" in low or "learning" in low:
        m = key_match(low, "lr", LR_AT_RE) or key_match(low, "learning", LR_AT_RE)
        if m is not None:
            lr = to_float(m["v"])
    if "tok" in low or "tps" in low or "wps" in low:
        m = key_match(low, "tok", TOKENS_AT_RE) or key_match(low, "tps", TOKENS_AT_RE) \
            or key_match(low, "wps", TOKENS_AT_RE) or tokens_after(low)
        if m is not None:
            tokens = to_float(m["v"])
            if tokens is not None and m["k"]:
                tokens *= 1e6 if m["k"] == "m" else 1e3
    m = key_match(low, "time", TIME_AT_RE, ("_",)) if "time" in low else None
    if m is None and "dt" in low:
        m = key_match(low, "dt", TIME_AT_RE)
    if m is not None:
        v = m["v"]
        rate = (repr(float(v) / 1000.0) if (m["u1"] or m["u2"]) == "ms" else v, "s/it")
    elif " ms" in low:
        m = search_near(PAREN_MS_RE, low, " ms", 12, 3)
        if m is not None:
            rate = (repr(float(m["v"]) / 1000.0), "s/it")
    if rate is None and ("it/s" in low or "step/s" in low or "steps/s" in low):
        m = search_near(RATE_RE, low, "/s", 24, 2)
        if m is not None:
            rate = (m["v"], "it/s")
    if "epoch" in low:
        m = key_match(low, "epoch", EPOCH_AT_RE)
        if m is not None:
            epoch = to_float(m["v"])
    return loss, lr, tokens, rate, epoch


TIMESTAMP_RE = _rx(
    r"^\D{0,32}?(?P<d>\d{4}-\d\d-\d\d)[ T](?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d(?:[.,]\d+)?)"
)
"""A leading log timestamp (`[2023-08-02 00:41:17,935]`, `[titan] 2024-05-01 12:00:03,250`),
used as the time of a step line when a whole file is parsed (there is no arrival time)."""

DICT_ITEM_RE = _rx(r"""["'](?P<k>[\w/.\- ]+)["']\s*:\s*["']?(?P<v>[^,"'}\s]+)""")
"""One `'key': value` of a Python dict repr (Trainer logs) or a flat JSON object."""

STEP_KEYS = ("step", "global_step", "_step", "iter", "iteration", "train/global_step",
             "trainer/global_step", "num_steps")
TOTAL_KEYS = ("total_steps", "max_steps", "total")
LOSS_KEYS = ("loss", "train_loss", "train/loss", "training_loss", "loss_step")
LR_KEYS = ("learning_rate", "lr", "train/learning_rate", "train/lr")
TOKENS_KEYS = ("tokens_per_s", "tokens_per_sec", "tokens_per_second", "tok_per_s", "tok/s",
               "tokens/s", "tps", "train_tokens_per_second", "tokens_per_second_per_gpu",
               "throughput/tokens_per_s")
EPOCH_KEYS = ("epoch", "train/epoch")
STEP_TIME_KEYS = ("step_time", "dt", "iter_time", "time_per_step", "time/step")


def dict_items(line: str) -> dict[str, str]:
    """The flat `key: value` pairs of a dict-like line (JSON or a Python repr); `findall`
    gives them as `(key, value)` pairs without a match object each."""
    return dict(DICT_ITEM_RE.findall(line))


def first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of `keys` present in `d`, else None."""
    for k in keys:
        v = d.get(k)
        if v is not None:
            return v
    return None


# -------------------------------------------------------------------- number helpers

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def to_float(text: str | None) -> float | None:
    """A number as logs print it: `1,234.5`, `12_345`, `23.4k`, `4.5E-04`; else None."""
    if not text:
        return None
    try:
        return float(text)  # the usual case, at C speed
    except ValueError:
        pass
    mult = 1.0
    if text[-1] in _SUFFIX:
        mult, text = _SUFFIX[text[-1]], text[:-1]
    try:
        return float(text.replace(",", "").replace("_", "").replace("'", "").replace(" ", "")) * mult
    except ValueError:
        return None


def clock_seconds(text: str | None) -> float | None:
    """Seconds from tqdm/Rich clocks `05:03`, `1:02:03`; None for `?` or `-:--:--`."""
    if not text or "-" in text or "?" in text:
        return None
    total = 0.0
    try:
        for part in text.split(":"):
            total = total * 60 + float(part)
    except ValueError:
        return None
    return total


def rate_steps_per_s(value: str | None, unit: str | None) -> float | None:
    """A tqdm/Rich rate in steps per second: `it/s` as is, `s/it` inverted."""
    v = to_float(value)
    if v is None or v <= 0 or not unit:
        return None
    return 1.0 / v if unit.startswith("s/") else v


def timestamp_seconds(m: re.Match[str]) -> float:
    """Seconds since an arbitrary epoch for a `TIMESTAMP_RE` match (only deltas matter)."""
    y, mo, d = (int(x) for x in m["d"].split("-"))
    # days from a fixed origin by the civil-from-days formula: no datetime objects in a loop
    a = (14 - mo) // 12
    yy, mm = y + 4800 - a, mo + 12 * a - 3
    days = d + (153 * mm + 2) // 5 + 365 * yy + yy // 4 - yy // 100 + yy // 400
    return days * 86400.0 + int(m["h"]) * 3600 + int(m["m"]) * 60 + float(m["s"].replace(",", "."))
