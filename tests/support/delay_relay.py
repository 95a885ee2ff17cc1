"""A loopback TCP relay that delays every chunk by a fixed time in each direction.

Why: pods are rented on other continents (30-150 ms round trip), where one SSH
channel is capped by its flow-control window, not by the network. On loopback that
never shows. `bench/download.py --rtt-ms N` puts this relay between every client
(gpuctl, scp, rsync) and the pod's sshd, so each method pays the same N ms round
trip: every chunk read on one side is written to the other N/2 ms after it arrived,
in order. There is no bandwidth limit and no loss: a pure delay line (as `tc netem
delay` without `rate`), so what a method loses to latency is its own.

Run it as a separate process (`python -m tests.support.delay_relay --listen-port 0
--target-port P --one-way-ms D`, printing the port it listens on as its first line),
so its CPU never competes with the measured client for a Python interpreter lock;
`DelayRelay` starts and stops such a process. The relay's own cost is the same for
every method that goes through it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import subprocess
import sys
from pathlib import Path

_HIGH_WATER = 64 * 1024 * 1024
"""Bytes waiting to be written on one side before the other side's reading pauses
(a delay line holds rate x delay bytes: 200 MB/s x 25 ms is 5 MB)."""


class _Half(asyncio.Protocol):
    """One socket of a relayed pair. What it reads goes to its peer's socket
    `delay_s` later; chunks that fall due together are written together.

    Written with protocols and `call_at`, not streams and a task per chunk: the relay
    runs on the same cores as what it measures, and every method pays for it per
    chunk (scp's many small ones most), so it should cost as little as it can."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        if self.peer is None:
            transport.pause_reading()  # nothing to send it to yet: `serve` resumes it
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.later(data)

    def eof_received(self) -> bool:
        assert self.peer is not None
        self.peer.later(b"")
        return True  # keep the socket open for the other direction

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def later(self, data: bytes) -> None:
        """Write `data` to this socket `delay_s` from now (b"": then end it)."""
        loop = asyncio.get_running_loop()
        self.pending.append((loop.time() + self.delay_s, data))
        if self.timer is None:
            self.timer = loop.call_at(self.pending[0][0], self._deliver)

    def _deliver(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due: list[bytes] = []
        while self.pending and self.pending[0][0] <= now + 0.0005:
            data = self.pending.popleft()[1]
            if not data:
                self.eof = True
                break
            due.append(data)
        assert self.transport is not None
        if due and not self.transport.is_closing():
            self.transport.write(b"".join(due) if len(due) > 1 else due[0])
        if self.eof:
            if self.transport.can_write_eof() and not self.transport.is_closing():
                self.transport.write_eof()
            if self.peer is not None and self.peer.eof:  # both ways ended: done
                self.transport.close()
                if self.peer.transport is not None:
                    self.peer.transport.close()
            return
        if self.pending:
            self.timer = loop.call_at(self.pending[0][0], self._deliver)

    # Flow control: while this socket cannot take more, the peer stops reading.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(listen_port: int, target_host: str, target_port: int, one_way_s: float) -> None:
    """Relay connections on 127.0.0.1:`listen_port` to the target, delayed both ways;
    prints the port actually listened on, then serves until killed."""
    loop = asyncio.get_running_loop()

    def accepted() -> _Half:
        client = _Half(one_way_s)

        async def connect() -> None:
            await client.ready
            assert client.transport is not None
            try:
                _, server = await loop.create_connection(lambda: _Half(one_way_s), target_host, target_port)
            except OSError:
                client.transport.close()
                return
            client.peer, server.peer = server, client
            for half in (client, server):
                assert half.transport is not None
                half.transport.resume_reading()

        tasks.add(t := asyncio.ensure_future(connect()))
        t.add_done_callback(tasks.discard)
        return client

    tasks: set[asyncio.Future] = set()
    server = await loop.create_server(accepted, "127.0.0.1", listen_port)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


class DelayRelay:
    """A `serve` process in front of `target_port`; `port` is where clients connect.
    Use as a context manager."""

    def __init__(self, target_port: int, rtt_ms: float, target_host: str = "127.0.0.1"):
        self.rtt_ms = rtt_ms
        root = str(Path(__file__).resolve().parents[2])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.delay_relay", "--listen-port", "0",
             "--target-host", target_host, "--target-port", str(target_port), "--one-way-ms", str(rtt_ms / 2)],
            stdout=subprocess.PIPE, cwd=root, env={**os.environ, "PYTHONPATH": root})
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip():
            self._proc.kill()
            raise RuntimeError("the delay relay did not start")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "DelayRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--one-way-ms", type=float, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.listen_port, args.target_host, args.target_port, args.one_way_ms / 1000))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
