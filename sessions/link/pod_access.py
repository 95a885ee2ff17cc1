"""Kept for callers: `open_runner` is `sessions.link.pod_link.open_transport`.

`gpuctl launch`, `kill`, `logs -n` and friends connect, act and leave through the
pod's link (`sessions.link.pod_link`), which resolves the target the way the monitor does
and opens one connection; the `Runner` they get is a `backends.transport.Transport`.
"""

from __future__ import annotations

from sessions.link.pod_link import open_transport as open_runner

__all__ = ["open_runner"]
