"""Show a remote log to the user byte for byte, surviving dropped connections.

`gpuctl logs -f` must behave like `tail -F` on the pod: every byte, nothing skipped.
(The agent's capped follow is for monitoring, where skipping a flood is right; here
it would not be.) It works in two steps, both plain coreutils/busybox so pods
without python3 work too:

1. one exec prints the file's size S and its last bytes up to exactly S (read
   from the end: a 2 GB log costs no more than a small one); the last N lines are
   cut from those locally;
2. `tail -c +S+1 -F` streams everything after S. Bytes are counted, so after a
   dropped connection the stream resumes at the exact byte it had reached; a file
   that shrank meanwhile (rotated or truncated) is read from its start, said so.

Both steps go through the pod's link (`sessions.link.pod_link`), so a pod behind RunPod's
shell-only proxy is read through its PTY shell like every other command, and a
`host: local` pod through `sh -c`. The link also owns the reconnects: after a drop the
stream asks it again once its backoff has passed, on the same resolved target.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

import asyncssh

from backends.remote_path import quote_path
from backends.ssh import FailureKind, SshFailure
from sessions.config.loader import Defaults, PodConfig
from sessions.link.pod_link import PodLink

LAST_BYTES = 4 * 1024 * 1024
"""At most this much of the file's end is read to find its last N lines."""
FOLLOW_RESTART_S = 1.0
"""A follow that ended while the link stayed up is started again after this long."""

def snapshot_command(path: str, max_bytes: int = LAST_BYTES) -> str:
    """Print the file's size on one line, then its last min(size, max_bytes) bytes.

    `tail -c +K` seeks on a regular file and `head -c` stops at the size read first,
    so bytes appended meanwhile are left for the follow step.
    """
    p = quote_path(path)
    return (
        f"sz=$(wc -c < {p}) || exit 3; k={int(max_bytes)}; "
        f'[ "$sz" -lt "$k" ] && k=$sz; printf \'%s\\n\' "$sz"; '
        f'if [ "$k" -gt 0 ]; then tail -c +$((sz - k + 1)) {p} | head -c "$k"; fi'
    )


def follow_command(path: str, from_byte: int) -> str:
    """Stream the file from byte `from_byte` (0-based) on, following rotation."""
    return f"exec tail -c +{int(from_byte) + 1} -F -- {quote_path(path)}"


def size_command(path: str) -> str:
    """The file's size, or nothing when it does not exist."""
    return f"wc -c < {quote_path(path)} 2>/dev/null || true"


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of `data` (a final line without newline counts)."""
    if count <= 0:
        return b""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(count):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1:]


async def stream_log(
    pod: PodConfig,
    defaults: Defaults,
    path: str,
    *,
    lines: int,
    follow: bool,
    on_notice: Callable[[str], None] = lambda _msg: None,
    link: PodLink | None = None,
) -> AsyncIterator[bytes]:
    """Yield the log's last `lines` lines, then (with `follow`) whatever is appended.

    Raises:
        SshFailure: the pod is unreachable at first, or (without `follow`) the file
            cannot be read. With `follow`, later failures reconnect with the link's
            backoff.

    `link`: the pod's link (`Fleet.for_command(...).link(pod)`); without one the stream
    makes its own and closes it at the end.
    """
    if link is None:
        own = PodLink(pod, defaults)
        try:
            async for chunk in stream_log(pod, defaults, path, lines=lines, follow=follow, on_notice=on_notice,
                                          link=own):
                yield chunk
        finally:
            await own.aclose()
        return
    timeout = defaults.command_timeout
    offset: int | None = None  # the next byte of the file to show
    first = True
    while True:
        try:
            if not first:
                await link.wait_to_retry()  # the link's backoff after a drop (none while it is up)
            async with link.borrow() as shell:
                if offset is None:
                    result = await shell.run(snapshot_command(path), timeout=timeout)
                    if not result.ok:
                        if not follow:
                            raise SshFailure(FailureKind.COMMAND, f"cannot read {path}: {result.last_error_line()}")
                        on_notice(f"{path} does not exist yet; waiting for it")
                        offset = 0
                    else:
                        header, _, body = result.stdout_bytes.partition(b"\n")
                        offset = int(header.strip() or b"0")
                        if body:
                            yield last_lines(body, lines)
                    if not follow:
                        return
                else:
                    result = await shell.run(size_command(path), timeout=timeout)
                    size = int(result.stdout.strip() or "0")
                    if size < offset:
                        on_notice(f"{path} shrank while disconnected (rotated or truncated); showing it from the start")
                        offset = 0
                first = False
                stream = shell.stream(follow_command(path, offset))
                try:
                    async for chunk in stream:
                        offset += len(chunk)
                        yield chunk
                finally:
                    await stream.aclose()
                on_notice("the follow ended on the pod; restarting it")
        except SshFailure as failure:
            if first or not follow:
                raise
            on_notice(f"{failure.message}; reconnecting")
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            if first or not follow:
                raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
            on_notice(f"connection lost ({exc}); reconnecting")
        if link.connected or link.local:
            await asyncio.sleep(FOLLOW_RESTART_S)  # the follow ended with the link up: no storm of restarts

