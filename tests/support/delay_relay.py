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
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

_READ = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy `reader` to `writer`, each chunk written `delay_s` after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(_READ)
            queue.put_nowait((time.monotonic() + delay_s, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        await asyncio.gather(sender, return_exceptions=True)


async def serve(listen_port: int, target_host: str, target_port: int, one_way_s: float) -> None:
    """Relay connections on 127.0.0.1:`listen_port` to the target, delayed both ways;
    prints the port actually listened on, then serves until killed."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pipe(client_r, server_w, one_way_s), _pipe(server_r, client_w, one_way_s))
        finally:
            for w in (client_w, server_w):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
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
