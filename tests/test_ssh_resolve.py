"""Resolution order of a pod's SSH settings: pod entry, then ~/.ssh/config, then defaults."""

from __future__ import annotations

import getpass
import random

import pytest

from backends.ssh import Backoff, resolve_target

SSH_CONFIG = """\
Host trainer
    HostName 127.0.0.1
    Port 2222
    User alice
    IdentityFile ~/keys/trainer_ed25519

Host jumped
    HostName 10.0.0.5
    ProxyJump bastion.example.com

Host bare
    HostName 192.0.2.10
"""


@pytest.fixture
def ssh_config(tmp_path):
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG)
    return [str(path)]


def resolve(ssh_config, **kw):
    kw.setdefault("name", "pod")
    return resolve_target(ssh_config_files=ssh_config, known_hosts_files=[], **kw)


def test_an_alias_alone_is_a_complete_pod_entry(ssh_config, monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    t = resolve(ssh_config, host="trainer", default_user="root", default_port=22022)
    assert (t.hostname, t.port, t.user) == ("127.0.0.1", 2222, "alice")
    assert t.identities == ("/home/someone/keys/trainer_ed25519",)


def test_pod_entry_values_win_over_ssh_config(ssh_config):
    t = resolve(ssh_config, host="trainer", port=22, user="bob", identity="/k/id")
    assert (t.port, t.user, t.identities) == (22, "bob", ("/k/id",))


def test_defaults_fill_only_what_ssh_config_leaves_out(ssh_config):
    t = resolve(ssh_config, host="bare", default_user="root", default_port=22022, default_identity="/d/id")
    assert (t.hostname, t.port, t.user, t.identities) == ("192.0.2.10", 22022, "root", ("/d/id",))


def test_without_anything_openssh_defaults_apply(ssh_config):
    t = resolve(ssh_config, host="203.0.113.7")
    assert (t.hostname, t.port, t.user, t.host_key_policy) == ("203.0.113.7", 22, getpass.getuser(), "strict")


def test_proxy_jump_is_carried_to_asyncssh_and_to_attach(ssh_config):
    t = resolve(ssh_config, host="jumped")
    assert t.proxy_jump == "bastion.example.com"
    assert "-J" in t.ssh_argv() and t.ssh_argv()[-1] == "10.0.0.5"


def test_ssh_argv_passes_every_resolved_setting(ssh_config):
    t = resolve_target(name="p", host="trainer", ssh_config_files=ssh_config,
                       known_hosts_files=["/kh/one"], gpuctl_known_hosts="/kh/gpuctl", host_key="accept-new")
    argv = t.ssh_argv()
    assert argv[:2] == ["ssh", "-t"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "alice"
    assert "UserKnownHostsFile=/kh/one /kh/gpuctl" in argv
    assert "StrictHostKeyChecking=accept-new" in argv


def test_unknown_host_key_policy_is_refused(ssh_config):
    with pytest.raises(ValueError, match="accept-new"):
        resolve(ssh_config, host="bare", host_key="accept_new")


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(round(d, 6) for d in delays[3:])) > 1, "jitter spreads reconnects"
    backoff.reset()
    assert backoff.next_delay() <= 1.0
