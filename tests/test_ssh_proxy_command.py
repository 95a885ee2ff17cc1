"""ProxyCommand and Include in ~/.ssh/config, as SkyPilot writes them (issue 18, part 3).

A real second sshd is the jump host: the pod's alias has `ProxyCommand ssh ... -W %h:%p
JUMP`, reached through a file that `~/.ssh/config` `Include`s. Each jump sshd logs one
"Accepted publickey" line per connection it lets in, so the count says the proxy carried
the connection. The alias says `StrictHostKeyChecking no` and `UserKnownHostsFile
/dev/null`, as SkyPilot's entries do; gpuctl's host key policy still applies.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from backends.ssh import FailureKind, SshFailure, connect, expand_proxy_command, resolve_target, run_command

pytestmark = pytest.mark.usefixtures("isolated_home")


def _accepted(server) -> int:
    return server.log_text().count("Accepted publickey")


def _proxy_line(jump) -> str:
    return "ProxyCommand " + shlex.join(["ssh", *jump.ssh_options(), "-W", "%h:%p", jump.destination])


def _write_cluster(home: Path, pod, jump, *, include: str, where: Path, alias: str = "mycluster") -> None:
    """A SkyPilot-shaped entry in `where`, included from ~/.ssh/config by `include`."""
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(
        f"# Added by sky (use `sky stop/down {alias}` to remove)\n"
        f"Host {alias}\n"
        f"  HostName {pod.host}\n"
        f"  User {pod.user}\n"
        f"  IdentityFile {pod.client_key}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile=/dev/null\n"
        "  GlobalKnownHostsFile=/dev/null\n"
        f"  Port {pod.port}\n"
        f"  {_proxy_line(jump)}\n")
    (home / ".ssh" / "config").write_text(f"# Added by SkyPilot for ssh config of all clusters\nInclude {include}\n\n"
                                          "Host unrelated\n  HostName 192.0.2.1\n")


def _target(alias: str, known: Path, **kw):
    return resolve_target(name=alias, host=alias, gpuctl_known_hosts=str(known), known_hosts_files=[], **kw)


async def test_alias_through_proxycommand_in_an_included_file(isolated_home, sshd, sshd_nopython, tmp_path):
    jump = sshd_nopython
    # Relative to ~/.ssh, with a glob: how OpenSSH reads `Include` in a user config.
    _write_cluster(isolated_home, sshd, jump, include="clusters/*", where=isolated_home / ".ssh" / "clusters" / "mycluster")
    target = _target("mycluster", sshd.write_known_hosts(tmp_path / "gpuctl_known_hosts"))
    assert (target.hostname, target.port, target.user) == (sshd.host, sshd.port, sshd.user)
    assert target.proxy_command is not None and f"-W {sshd.host}:{sshd.port}" in target.proxy_command
    before = _accepted(jump)
    conn = await connect(target)
    try:
        result = await run_command(conn, "echo through", timeout=10)
    finally:
        conn.close()
    assert result.stdout.strip() == "through"
    assert _accepted(jump) == before + 1, "the connection went through the jump host"


def test_openssh_argv_goes_through_the_same_proxycommand(isolated_home, sshd, sshd_nopython, tmp_path):
    jump = sshd_nopython
    sky = isolated_home / ".sky" / "generated" / "ssh"
    # SkyPilot's own line: a ~ path with a glob.
    _write_cluster(isolated_home, sshd, jump, include="~/.sky/generated/ssh/*", where=sky / "mycluster")
    target = _target("mycluster", sshd.write_known_hosts(tmp_path / "gpuctl_known_hosts"))
    argv = target.ssh_argv(tty=False)
    assert "StrictHostKeyChecking=yes" in argv, "the alias's 'StrictHostKeyChecking no' is not taken"
    before = _accepted(jump)
    # -F /dev/null: only what ssh_argv says reaches the machine (no config of the person running the tests).
    done = subprocess.run([argv[0], "-F", "/dev/null", "-o", "BatchMode=yes", *argv[1:], "echo", "via-openssh"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via-openssh"
    assert _accepted(jump) == before + 1


async def test_unknown_host_key_is_refused_through_the_proxy(isolated_home, sshd, sshd_nopython, tmp_path):
    jump = sshd_nopython
    _write_cluster(isolated_home, sshd, jump, include="clusters/*", where=isolated_home / ".ssh" / "clusters" / "c1")
    empty = tmp_path / "gpuctl_known_hosts"
    empty.write_text("")
    target = _target("mycluster", empty)
    with pytest.raises(SshFailure) as caught:
        await connect(target)
    assert caught.value.kind == FailureKind.HOST_KEY_UNKNOWN
    assert empty.read_text() == "", "strict records nothing"
    # The OpenSSH client refuses it too (the config's "no checking" is overridden).
    argv = target.ssh_argv(tty=False)
    done = subprocess.run([argv[0], "-F", "/dev/null", "-o", "BatchMode=yes", *argv[1:], "true"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "host key" in done.stderr.lower()


def test_tokens_expand_with_the_pod_entrys_port_and_user(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host sky-*\n  HostName 10.1.2.3\n  Port 2200\n  User ubuntu\n"
                   "  ProxyCommand nc -X connect -x proxy:3128 %h %p # %r %n 100%%\n")
    t = resolve_target(name="p", host="sky-head", user="root", port=2222, ssh_config_files=[str(cfg)],
                       known_hosts_files=[])
    assert t.proxy_command == "nc -X connect -x proxy:3128 10.1.2.3 2222 # root sky-head 100%"
    # OpenSSH expands the option again, so the literal % is written %% there.
    assert "ProxyCommand=nc -X connect -x proxy:3128 10.1.2.3 2222 # root sky-head 100%%" in t.ssh_argv()


def test_proxycommand_none_and_proxyjump_win(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host a\n  ProxyCommand none\nHost b\n  ProxyJump bastion\n  ProxyCommand nc %h %p\n")
    assert resolve_target(name="a", host="a", ssh_config_files=[str(cfg)], known_hosts_files=[]).proxy_command is None
    b = resolve_target(name="b", host="b", ssh_config_files=[str(cfg)], known_hosts_files=[])
    assert (b.proxy_jump, b.proxy_command) == ("bastion", None)


def test_unknown_token_is_refused_in_words():
    with pytest.raises(ValueError, match="%Q"):
        expand_proxy_command("nc %Q", host="h", port=22, user="u", alias="a")


async def test_what_the_proxy_prints_on_stderr_stays_out_of_the_ssh_stream(isolated_home, sshd, sshd_nopython,
                                                                          tmp_path, capfd):
    # OpenSSH clients print warnings on stderr (SkyPilot's entries make ssh say
    # "Permanently added..."); asyncssh would read them as the server's banner.
    jump = sshd_nopython
    where = isolated_home / ".ssh" / "clusters" / "noisy"
    _write_cluster(isolated_home, sshd, jump, include="clusters/*", where=where, alias="noisy")
    where.write_text(where.read_text().replace("ProxyCommand ", "ProxyCommand echo Warning: noise >&2; "))
    conn = await connect(_target("noisy", sshd.write_known_hosts(tmp_path / "gpuctl_known_hosts")))
    try:
        assert (await run_command(conn, "echo ok", timeout=10)).stdout.strip() == "ok"
    finally:
        conn.close()
    assert "noise" not in capfd.readouterr().err, "nor on the user's terminal"


async def test_a_failing_proxy_says_why_in_the_error(isolated_home, tmp_path, capfd):
    (isolated_home / ".ssh" / "config").write_text(
        "Host gone\n  HostName 10.9.8.7\n  ProxyCommand sh -c 'echo jump host unreachable >&2; exit 255'\n")
    target = _target("gone", tmp_path / "kh")
    with pytest.raises(SshFailure) as caught:
        await connect(target)
    assert "its ProxyCommand said: jump host unreachable" in caught.value.message
    assert "unreachable" not in capfd.readouterr().err
