"""Host keys gpuctl refuses say why, and a key it records is announced (issue 19, item 12).

Real OpenSSH servers on loopback (`tests/support/sshd.py`) with their own host keys:

* `@revoked` in known_hosts: asyncssh forgets a port-specific `@revoked [host]:port`
  line when no trusted key matches that port, so under accept-new the revoked key was
  recorded and trusted; with a trusted entry too it was reported "unknown". Now both
  are `host-key-revoked`, and nothing is recorded.
* A server that offers no host key type we offered closes the connection silently, so
  it was reported "lost": an RSA-only server for a host known by its Ed25519 key is now
  `host-key-changed` naming both types, a DSA-only server `host-key-algorithm`.
* accept-new prints "recorded new host key for POD (..., SHA256:...) in PATH" once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncssh
import pytest
import yaml

from backends.ssh import FailureKind, SshFailure, connect, resolve_target
from sessions.config.paths import gpuctl_known_hosts_path
from tests.support.sshd import SshdServer
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]


def keygen(kind: str, path: Path, *bits: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


@contextmanager
def server_with_only(key: Path, algorithms: str) -> Iterator[SshdServer]:
    """A server whose one usable host key is `key` (HostKeyAlgorithms keeps its own
    Ed25519 key out of the offer; sshd keeps the first value it reads)."""
    server = SshdServer(extra_config=[f"HostKey {key}", f"HostKeyAlgorithms {algorithms}"])
    try:
        yield server.start()
    finally:
        server.close()


def target(server: SshdServer, tmp_path: Path, known: list[str], policy: str = "strict"):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(line + "\n" for line in known))
    return resolve_target(
        name="p", host=server.host, port=server.port, user=server.user, identity=str(server.client_key),
        host_key=policy, gpuctl_known_hosts=str(tmp_path / "gpuctl_known_hosts"),
        ssh_config_files=(), known_hosts_files=(str(known_hosts),), connect_timeout=10)


async def refusal(server: SshdServer, tmp_path: Path, known: list[str], policy: str = "strict") -> SshFailure:
    with pytest.raises(SshFailure) as failed:
        conn = await connect(target(server, tmp_path, known, policy))
        conn.close()  # only reached when the test fails
    return failed.value


def fingerprint(public_key: str) -> str:
    return asyncssh.import_public_key(public_key).get_fingerprint()


async def test_a_revoked_key_is_refused_under_accept_new_and_never_recorded(sshd, tmp_path):
    line = f"@revoked [{sshd.host}]:{sshd.port} {sshd.host_public_key}"
    failure = await refusal(sshd, tmp_path, [line], policy="accept-new")
    assert failure.kind == FailureKind.HOST_KEY_REVOKED
    assert "@revoked" in failure.message and fingerprint(sshd.host_public_key) in failure.message
    assert not (tmp_path / "gpuctl_known_hosts").exists()


async def test_a_revoked_key_that_is_also_trusted_is_revoked_not_unknown(sshd, tmp_path):
    failure = await refusal(sshd, tmp_path, [sshd.known_hosts_line(), f"@revoked * {sshd.host_public_key}"])
    assert failure.kind == FailureKind.HOST_KEY_REVOKED


async def test_a_host_known_by_ed25519_that_offers_only_rsa_is_a_changed_key(sshd, tmp_path):
    rsa = keygen("rsa", tmp_path / "rsa_host_key", "-b", "2048")  # 3072 takes seconds
    with server_with_only(rsa, "rsa-sha2-512,rsa-sha2-256") as server:
        known = [f"[{server.host}]:{server.port} {sshd.host_public_key}"]  # an Ed25519 key
        for policy in ("strict", "accept-new"):
            failure = await refusal(server, tmp_path, known, policy)
            assert failure.kind == FailureKind.HOST_KEY_CHANGED, failure.message
            assert "ssh-ed25519" in failure.message and "ssh-rsa" in failure.message
            assert fingerprint(rsa.with_suffix(".pub").read_text()) in failure.message
        assert not (tmp_path / "gpuctl_known_hosts").exists()


async def test_a_server_with_only_a_dsa_host_key_is_refused_with_the_reason(tmp_path):
    dsa = keygen("dsa", tmp_path / "dsa_host_key")
    with server_with_only(dsa, "ssh-dss") as server:
        failure = await refusal(server, tmp_path, [], policy="accept-new")
    assert failure.kind == FailureKind.HOST_KEY_ALGORITHM, failure.message
    assert "ssh-dss" in failure.message
    assert not (tmp_path / "gpuctl_known_hosts").exists()


def test_accept_new_says_which_key_it_recorded_once(sshd, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    entry = sshd.pod_entry("p", host_key="accept-new", sessions=[{"name": "train", "workdir": str(workdir)}])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pods": [entry]}))
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    err = capsys.readouterr().err
    path = gpuctl_known_hosts_path()
    expected = (f"recorded new host key for p ({sshd.user}@{sshd.host}:{sshd.port}, "
                f"{fingerprint(sshd.host_public_key)}) in {path}")
    assert err.splitlines() == [expected]
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    assert "recorded" not in capsys.readouterr().err


async def test_a_handshake_dropped_for_another_reason_is_still_lost(tmp_path):
    """The second look only names a host key problem it saw: a server that hangs up
    after its banner (sshd's MaxStartups, a dying proxy) stays `lost`."""
    import asyncio

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("")
        with pytest.raises(SshFailure) as failed:
            await connect(resolve_target(name="p", host="127.0.0.1", port=port, user="u",
                                         ssh_config_files=(), known_hosts_files=(str(known_hosts),),
                                         gpuctl_known_hosts=str(tmp_path / "g"), connect_timeout=10))
    finally:
        server.close()
        await server.wait_closed()
    assert failed.value.kind == FailureKind.LOST
