"""Kept for imports: the `Runner` is `backends.transport.Transport` now.

`Runner` names the part of a transport most sessions code needs (`run`); `SshRunner`
and `LocalRunner` are the transports of the same names. New code imports
`backends.transport`.
"""

from __future__ import annotations

from backends.transport.base import CommandResult, Transport
from backends.transport.local import LocalTransport as LocalRunner
from backends.transport.ssh_exec import SshTransport as SshRunner

Runner = Transport

__all__ = ["CommandResult", "LocalRunner", "Runner", "SshRunner"]
