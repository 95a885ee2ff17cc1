"""Money spent per pod, accumulated and kept, so a total never goes down.

Spend used to be recomputed on every sample as price x how long the instance has run
now, so it fell to zero when a pod stopped, was preempted or torn down, or when gpuctl
restarted (the fleet's total went $2.63 -> $2.07). Here each pod has a ledger:
`banked` (closed running intervals) plus the current interval's dollars, and the
current interval's figure only ever grows. An interval starts at the provider's start
time where the provider gives one (`provider`), else when gpuctl first saw the pod
online (`first_seen`; ledgers from before kept `uptime`, the machine's boot, which in a
container is the host's and so not when the pod was rented); a start clearly
later than the recorded one (same source) means the instance ran again, so the old
interval is banked first. A pod that is not running keeps its total: stopped,
preempted and torn-down pods still show what they cost until removed from the config.
gpuctl's own stop or teardown ends the interval at the moment it was asked for
(`until`, from `provider_ops`' record): the one figure lower than what was counted,
so a `gpuctl watch` that kept counting while it saw the pod reconnecting cannot leave
a stopped pod's spend depending on which process counted it.

One small JSON file per config file under the platform state dir, written with
`checkpoint_index.write_json_atomic` under its lock: at once when an interval opens or
is banked, else at most every `SAVE_EVERY_S` (a crash loses at most that much of the
current interval, which the provider's start time restores anyway).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import platformdirs

from sessions.checkpoints.index import locked, write_json_atomic

_VERSION = 1
SAVE_EVERY_S = 60.0
NEW_INTERVAL_SLACK_S = 300.0
"""How much later a start time must be to count as a new run: the provider's uptime is
read at poll time and the agent's at sample time, so the same run's start wobbles."""
RESTART_SLACK_S = 60.0
"""The same, once the pod was seen not running: a spot pod preempted and back within
`NEW_INTERVAL_SLACK_S` of its start is a new run, or its outage would be charged."""

FROM_PROVIDER, FROM_UPTIME, FROM_FIRST_SEEN = "provider", "uptime", "first_seen"


def default_path(config_path: Path | str) -> Path:
    """One ledger per config file (pods are named per config)."""
    digest = hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:16]
    return platformdirs.user_state_path("gpuctl") / "spend" / f"{digest}.json"


@dataclass
class Ledger:
    """One pod's spend.

    Attributes:
        banked: dollars of finished running intervals.
        current: dollars of the current (or last) interval so far; never decreases.
        since: unix time the current interval started, or None.
        source: where `since` came from (`provider`, `uptime`, `first_seen`).
        open: the pod was running at the last sample (a `first_seen` interval that
            closed cannot be told apart from a new one, so it is banked on reopening).
        until: when gpuctl asked to stop or tear down the instance, ending the
            current interval there (`record`'s `until`); None while it runs.
        price: $/h the current interval was counted at (a stopped instance's price
            from the provider may read 0, so ending the interval later uses this).
    """

    banked: float = 0.0
    current: float = 0.0
    since: float | None = None
    source: str | None = None
    open: bool = False
    until: float | None = None
    price: float | None = None

    @property
    def total(self) -> float:
        return round(self.banked + self.current, 4)


def _cap(ledger: Ledger, price: float | None, until: float | None) -> bool:
    """End the ledger's current interval at `until` (gpuctl's stop or teardown) when
    that falls in it: its figure becomes price x (until - since), lower than what a
    process that kept counting had reached. Whether anything changed."""
    price = ledger.price if ledger.price is not None else price
    if until is None or price is None or ledger.since is None or until < ledger.since or ledger.until == until:
        return False
    ledger.until = until
    ledger.current = round(price * (until - ledger.since) / 3600.0, 4)
    return True


class SpendBook:
    """Every pod's ledger for one config file; see the module docstring."""

    def __init__(self, path: Path, pod_names: Iterable[str] | None = None,
                 clock=time.time) -> None:
        self.path = path
        self._clock = clock
        self._saved_at = 0.0
        self.ledgers: dict[str, Ledger] = {}
        try:
            raw = json.loads(path.read_text())
            items = raw.get("pods", {}) if isinstance(raw, dict) else {}
            for name, item in items.items():
                self.ledgers[name] = Ledger(**item)
        except (OSError, ValueError, TypeError, AttributeError):
            self.ledgers = {}  # unreadable: start again rather than fail the screen
        self._keep = None if pod_names is None else set(pod_names)
        if self._keep is not None:  # a pod removed from the config takes its spend with it
            self.ledgers = {n: lg for n, lg in self.ledgers.items() if n in self._keep}

    def record(self, pod: str, price: float | None, since: float | None, source: str | None,
               now: float | None = None, until: float | None = None) -> Ledger | None:
        """Account one sample: `since`/`source` describe the running interval, or are
        None when the pod is not running. `until`: when gpuctl asked to stop or tear
        down the instance (`provider_ops.ended_by_gpuctl_at`), which ends the current
        interval there whoever counted it, even a process that kept counting while it
        saw the pod only reconnecting. Returns the ledger (None: never any spend)."""
        now = self._clock() if now is None else now
        ledger = self.ledgers.get(pod)
        if source is None or price is None:  # not running (or no price): nothing accrues
            if ledger is not None and (_cap(ledger, price, until) or ledger.open):
                ledger.open = False
                self._save(now, force=True)
            return ledger
        if ledger is None:
            ledger = self.ledgers[pod] = Ledger()
        start = now if since is None else min(since, now)
        changed = False
        if ledger.since is None:
            ledger.since, ledger.source, changed = start, source, True
        elif source == ledger.source and (not ledger.open if source == FROM_FIRST_SEEN
                                          else start > ledger.since + (RESTART_SLACK_S if not ledger.open
                                                                       else NEW_INTERVAL_SLACK_S)):
            ledger.banked = round(ledger.banked + ledger.current, 4)
            ledger.current, ledger.since, changed = 0.0, start, True
        elif source == FROM_PROVIDER and ledger.source != FROM_PROVIDER and start < ledger.since:
            ledger.since, ledger.source, changed = start, source, True  # a better start time
        elif ledger.source == FROM_UPTIME and source != FROM_UPTIME:  # a ledger kept before uptime was dropped
            ledger.banked = round(ledger.banked + ledger.current, 4)
            ledger.current, ledger.since, ledger.source, changed = 0.0, start, source, True
        if not ledger.open:
            ledger.open, changed = True, True
        running_since = ledger.since
        assert running_since is not None  # set above on a ledger's first sample
        if ledger.until is not None and (until is None or ledger.until < running_since):
            ledger.until, changed = None, True  # a new run since gpuctl's stop, or the stop did not happen
        ledger.price = price
        changed = _cap(ledger, price, until) or changed
        end = now if ledger.until is None else min(now, ledger.until)
        ledger.current = max(ledger.current, round(price * max(0.0, end - running_since) / 3600.0, 4))
        self._save(now, force=changed)
        return ledger

    def flush(self) -> None:
        """Write now (gpuctl is exiting)."""
        self._save(self._clock(), force=True)

    def _merge_disk(self) -> None:
        """Another gpuctl (the TUI beside `gpuctl watch`) may have written a larger
        figure since this one read the file: keep the larger, so the file never goes down."""
        for name, item in SpendBook(self.path, self._keep, clock=self._clock).ledgers.items():
            mine = self.ledgers.get(name)
            if mine is None:
                self.ledgers[name] = item
            elif mine.since == item.since and (mine.until is None) != (item.until is None):
                if item.until is not None:  # the same run, ended by gpuctl's stop: that figure is the truth
                    self.ledgers[name] = item
            elif item.total > mine.total:
                self.ledgers[name] = item

    def _save(self, now: float, *, force: bool) -> None:
        if not force and now - self._saved_at < SAVE_EVERY_S:
            return
        self._saved_at = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with locked(self.path):
                self._merge_disk()
                write_json_atomic(self.path, {"version": _VERSION,
                                              "pods": {n: asdict(lg) for n, lg in sorted(self.ledgers.items())}})
        except OSError:
            pass  # a full or read-only disk must not stop monitoring; the figure is still shown
