"""The cipher gpuctl's one connection negotiates with a real sshd.

Why it is pinned: a transfer through asyncssh is CPU-bound (each packet decrypted in
Python's reach), and AES-GCM with AES-NI costs about a fifth of ChaCha20-Poly1305's
CPU per GiB here (0.69 against 3.3 s/GiB to encrypt 32 KiB packets), on this side and
on the pod's sshd alike. asyncssh (and OpenSSH) offer ChaCha20 first, so without
`backends.ssh`'s preference every download and upload would pay for it. A preference,
never a restriction: a server that offers only ChaCha20 still connects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.ssh import connect, resolve_target
from tests.support.sshd import SshdServer

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen"), pytest.mark.usefixtures("isolated_home")]


def target(server: SshdServer, tmp_path: Path):
    known = server.write_known_hosts(tmp_path / "known_hosts")
    return resolve_target(
        name="p", host=server.host, port=server.port, user=server.user, identity=str(server.client_key),
        host_key="strict", ssh_config_files=(), known_hosts_files=(str(known),), connect_timeout=10)


async def negotiated(server: SshdServer, tmp_path: Path) -> tuple[str, str]:
    conn = await connect(target(server, tmp_path))
    try:
        return conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")
    finally:
        conn.close()
        await conn.wait_closed()


async def test_the_link_to_a_default_sshd_uses_aes_gcm_both_ways(sshd, tmp_path):
    assert await negotiated(sshd, tmp_path) == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")


async def test_a_server_that_offers_only_chacha20_still_connects(tmp_path):
    server = SshdServer(extra_config=["Ciphers chacha20-poly1305@openssh.com"]).start()
    try:
        assert await negotiated(server, tmp_path) == ("chacha20-poly1305@openssh.com",) * 2
    finally:
        server.close()
