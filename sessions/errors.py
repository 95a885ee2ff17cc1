"""The exceptions a caller of `sessions` may see: the one place the UI imports them from.

`tui/` imports only `sessions`, `themes` and itself (tests/test_architecture.py and the
import-linter contracts in pyproject.toml), yet a failed SSH command or provider call has
to reach it as a typed error it can phrase. These types are *re-exported*, not wrapped:

* each is defined once, where it is raised (`backends.ssh`, `backends.providers.base`),
  and already carries what the UI shows (a sentence for a person, its kind, status,
  code); a wrapper type would be a second truth with the same fields;
* wrapping would need a translating `except` at every `sessions` entry point, and one
  missed would let a raw backend error past the UI's handler as a traceback;
* `sessions` lets them through unchanged today, so re-exporting changes no behaviour
  and no message.

`PodNotRunning` is the one type sessions adds: an `SshFailure` (caught where it always
was) whose words are the pod's lifecycle state, raised by the Fleet's `borrow` when a
stopped, terminated or preempted pod cannot be reached (`sessions.providers.lifecycle`).

`GpuctlError` is the tuple an `except` uses to catch either at once. The demo's own
error lives with the demo's entry point (`sessions.demo`): importing it here would load
the demo's SSH servers into every command that catches an error.
"""

from __future__ import annotations

from backends.providers.base import ProviderError
from backends.ssh import SshFailure

__all__ = ["GpuctlError", "PodNotRunning", "ProviderError", "SshFailure"]

# A tuple, not a base class: the two are raised by independent backends, and
# `except GpuctlError:` catches the same set as a shared base would.
GpuctlError = (SshFailure, ProviderError)


class PodNotRunning(SshFailure):
    """An action could not reach a pod because it is not running (stopped, terminated,
    preempted): said as its state, never as the SSH error that followed from it
    ("connection refused by 127.0.0.1:45197 (is sshd running...)" for a stopped pod).

    Attributes:
        state: the `PodState` (`sessions.snapshot.NOT_RUNNING`).
        why: who says so ("runpod says the instance is stopped", "stopped by gpuctl"), or "".
        kind, message: as `SshFailure`'s (the kind the SSH failure had).
    """

    def __init__(self, kind: str, message: str, state: str, why: str = "") -> None:
        super().__init__(kind, message)
        self.state = state
        self.why = why

    @property
    def said(self) -> str:
        """'stopped (runpod says the instance is stopped)': the state and who says so."""
        return f"{self.state} ({self.why})" if self.why else self.state
