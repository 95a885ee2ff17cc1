"""SSH transport: resolve a pod's connection settings, connect with asyncssh, classify failures.

Everything gpuctl does on a pod goes through one asyncssh connection made here. The
module owns three decisions that must be identical for monitoring, downloads and
`ssh -t` attach:

* **Resolution order.** A value the pod entry sets wins; else `~/.ssh/config` (so an
  alias alone is a complete pod entry); else gpuctl's `defaults`; else OpenSSH's own
  defaults (port 22, the local user name). The SSH config is read as OpenSSH reads it,
  `Include` (relative to ~/.ssh, globs) followed, so SkyPilot's generated entries
  resolve; its `ProxyCommand` (tokens expanded with the values that won) reaches
  asyncssh and the OpenSSH client alike.
* **Host keys.** `strict`: the key must already be in `~/.ssh/known_hosts` (or a file
  the SSH config names) or gpuctl's own known_hosts. `accept-new`: an unknown host is
  recorded into gpuctl's known_hosts, like OpenSSH's `StrictHostKeyChecking=accept-new`,
  and its fingerprint is printed; a *changed* key (another key, or only another key
  type) and a key marked `@revoked` are always refused, loudly.
* **Failures in plain words.** Every connect error becomes an `SshFailure` with a
  `kind` a script can switch on and a message a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncssh
from asyncssh.config import SSHClientConfig
from asyncssh.public_key import get_default_public_key_algs, get_public_key_algs

# AES-GCM runs on AES-NI and costs about 40 % less client CPU per GiB than asyncssh's
# default chacha20-poly1305 (PERF-NOTES.md); offer it first, keep everything else after.
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

HOST_KEY_POLICIES = ("strict", "accept-new")


class FailureKind:
    """The kinds of `SshFailure`, as stable strings for JSON output and scripts."""

    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTH = "auth"
    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    HOST_KEY_REVOKED = "host-key-revoked"
    HOST_KEY_ALGORITHM = "host-key-algorithm"
    """The server offers only host key types gpuctl does not accept (ssh-dss)."""
    LOST = "lost"
    COMMAND = "command"
    OTHER = "other"


class SshFailure(Exception):
    """A connection or remote-command failure, classified and phrased for a person.

    Attributes:
        kind: one of the `FailureKind` values.
        message: a sentence saying what happened and, where we know, what to do.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SshTarget:
    """The connection settings gpuctl resolved for one pod.

    The same object drives asyncssh and the `ssh -t` command line used for attach, so
    attach reaches exactly the machine that monitoring reaches.
    """

    name: str
    alias: str
    hostname: str
    port: int
    user: str
    identities: tuple[str, ...] = ()
    host_key_policy: str = "strict"
    known_hosts_files: tuple[str, ...] = ()
    gpuctl_known_hosts: str = ""
    proxy_jump: str | None = None
    proxy_command: str | None = None
    """The SSH config's `ProxyCommand`, its `%h %p %r` tokens already expanded (a shell
    command line: OpenSSH runs it with `sh -c`). None: a direct TCP connection."""
    ssh_config_files: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    command_timeout: float = 30.0

    @property
    def display(self) -> str:
        """`user@host:port` as shown in tables and errors."""
        return f"{self.user}@{self.hostname}:{self.port}"

    def ssh_argv(self, *, tty: bool = True) -> list[str]:
        """The OpenSSH client argv (without a remote command) for these settings.

        OpenSSH reads its config from the passwd home, not from what we resolved, so
        every setting is passed explicitly.
        """
        argv = ["ssh"]
        if tty:
            argv.append("-t")
        argv += ["-p", str(self.port), "-l", self.user]
        for identity in self.identities:
            argv += ["-i", identity]
        files = [*self.known_hosts_files]
        if self.gpuctl_known_hosts:
            files.append(self.gpuctl_known_hosts)
        if files:
            argv += ["-o", "UserKnownHostsFile=" + " ".join(shlex.quote(f) for f in files)]
        checking = "accept-new" if self.host_key_policy == "accept-new" else "yes"
        argv += ["-o", f"StrictHostKeyChecking={checking}"]
        if self.proxy_jump:
            argv += ["-J", self.proxy_jump]
        elif self.proxy_command:
            # OpenSSH expands tokens in the option again: a literal % must stay one.
            argv += ["-o", "ProxyCommand=" + self.proxy_command.replace("%", "%%")]
        argv += ["-o", f"ConnectTimeout={int(max(1, self.connect_timeout))}"]
        argv.append(self.hostname)
        return argv


def default_ssh_config_files() -> tuple[str, ...]:
    """The user's OpenSSH client config, when it exists."""
    path = Path.home() / ".ssh" / "config"
    return (str(path),) if path.is_file() else ()


def default_known_hosts_files() -> tuple[str, ...]:
    """The user's OpenSSH known_hosts files that exist."""
    home = Path.home() / ".ssh"
    return tuple(str(p) for p in (home / "known_hosts", home / "known_hosts2") if p.is_file())


class _RawProxyConfig(SSHClientConfig):
    """asyncssh's client config reader (it follows `Include`, relative to ~/.ssh, with
    globs), but leaving `ProxyCommand` unexpanded: asyncssh would fill `%p` and `%r`
    from the file alone, while the pod entry's port and user win over the file's."""

    _percent_expand = SSHClientConfig._percent_expand - {"ProxyCommand"}


def _lookup_ssh_config(alias: str, files: Sequence[str]) -> SSHClientConfig | None:
    if not files:
        return None
    # `()` for user and port means "not given on the command line", so the file's own
    # User/Port entries stay visible to us.
    # asyncssh annotates load() on its base class as returning SSHConfig; it builds `cls`.
    return cast(SSHClientConfig, _RawProxyConfig.load(
        None, list(files), False, False, False, getpass.getuser(), (), alias, ()
    ))


_PROXY_TOKEN = re.compile(r"%(.)", re.DOTALL)


def expand_proxy_command(command: str, *, host: str, port: int, user: str, alias: str) -> str:
    """`ProxyCommand`'s tokens filled in as OpenSSH does: `%h` host name, `%p` port,
    `%r` remote user, `%n` the name as given, and the rest of OpenSSH's list.

    Raises:
        ValueError: a token OpenSSH does not define either (OpenSSH refuses it too).
    """
    local_host = socket.gethostname()
    values = {"%": "%", "h": host, "p": str(port), "r": user, "n": alias, "k": alias, "j": "",
              "u": getpass.getuser(), "d": str(Path.home()), "i": str(os.getuid()),
              "l": local_host, "L": local_host.split(".", 1)[0],
              "C": hashlib.sha1((local_host + host + str(port) + user).encode()).hexdigest()}

    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        if token not in values:
            raise ValueError(f"ProxyCommand for {alias!r} uses %{token}, which gpuctl does not expand "
                             "(OpenSSH knows %h %p %r %n %k %j %u %d %i %l %L %C %%)")
        return values[token]

    return _PROXY_TOKEN.sub(one, command)


def resolve_target(
    *,
    name: str,
    host: str,
    port: int | None = None,
    user: str | None = None,
    identity: str | None = None,
    host_key: str | None = None,
    default_user: str | None = None,
    default_port: int | None = None,
    default_identity: str | None = None,
    default_host_key: str | None = None,
    connect_timeout: float = 10.0,
    command_timeout: float = 30.0,
    gpuctl_known_hosts: str = "",
    ssh_config_files: Sequence[str] | None = None,
    known_hosts_files: Sequence[str] | None = None,
) -> SshTarget:
    """Merge a pod entry, `~/.ssh/config` and gpuctl defaults into an `SshTarget`.

    Args:
        name: the pod's name in gpuctl's config.
        host: an address, a host name, or an alias from the SSH config.
        port, user, identity, host_key: the pod entry's values (None = not set).
        default_*: gpuctl `defaults`, used only where neither the pod nor the SSH
            config sets a value.
        gpuctl_known_hosts: gpuctl's own known_hosts file (accept-new records here).
        ssh_config_files: override for tests; default `~/.ssh/config` when present.
        known_hosts_files: override for tests; default `~/.ssh/known_hosts`.
    """
    config_files = tuple(default_ssh_config_files() if ssh_config_files is None else ssh_config_files)
    ssh_cfg = _lookup_ssh_config(host, config_files)

    def from_cfg(option: str) -> Any:
        return ssh_cfg.get(option) if ssh_cfg is not None else None

    hostname = from_cfg("Hostname") or host
    resolved_port = port or from_cfg("Port") or default_port or 22
    resolved_user = user or from_cfg("User") or default_user or getpass.getuser()
    if identity:
        identities: tuple[str, ...] = (os.path.expanduser(identity),)
    elif from_cfg("IdentityFile"):
        identities = tuple(os.path.expanduser(str(p)) for p in from_cfg("IdentityFile"))
    elif default_identity:
        identities = (os.path.expanduser(default_identity),)
    else:
        identities = ()
    policy = host_key or default_host_key or "strict"
    if policy not in HOST_KEY_POLICIES:
        raise ValueError(f"host_key must be one of {', '.join(HOST_KEY_POLICIES)}, got {policy!r}")
    known = list(default_known_hosts_files() if known_hosts_files is None else known_hosts_files)
    for extra in from_cfg("UserKnownHostsFile") or ():
        extra = os.path.expanduser(str(extra))
        if extra not in known and os.path.isfile(extra):
            known.append(extra)
    proxy = from_cfg("ProxyJump")
    if isinstance(proxy, (list, tuple)):
        proxy = ",".join(str(p) for p in proxy)
    if proxy in ("none", ""):
        proxy = None
    # ProxyJump wins over ProxyCommand, as in asyncssh (OpenSSH takes whichever it
    # read first; a config setting both is ambiguous anyway).
    proxy_command = None
    raw_command = from_cfg("ProxyCommand")
    if isinstance(raw_command, (list, tuple)):
        raw_command = " ".join(str(p) for p in raw_command)
    if not proxy and raw_command and str(raw_command).strip().lower() != "none":
        proxy_command = expand_proxy_command(str(raw_command).strip(), host=str(hostname),
                                             port=int(resolved_port), user=str(resolved_user), alias=host)
    return SshTarget(
        name=name,
        alias=host,
        hostname=str(hostname),
        port=int(resolved_port),
        user=str(resolved_user),
        identities=identities,
        host_key_policy=policy,
        known_hosts_files=tuple(known),
        gpuctl_known_hosts=gpuctl_known_hosts,
        proxy_jump=proxy,
        proxy_command=proxy_command,
        ssh_config_files=config_files,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )


def _known_hosts_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _read_known_hosts(target: SshTarget) -> str:
    chunks = []
    for path in (*target.known_hosts_files, target.gpuctl_known_hosts):
        if path and os.path.isfile(path):
            chunks.append(Path(path).read_text(errors="replace"))
    return "\n".join(chunks)


def _revoked_entries(known_hosts_text: str) -> asyncssh.SSHKnownHosts:
    """The `@revoked` lines of a known_hosts text, read as plain entries.

    asyncssh's `match()` first looks a host up with its port and, when no trusted key
    matches there, again without it, keeping only that second answer: a
    `@revoked [host]:2222 KEY` line is forgotten, and under accept-new the revoked key
    was recorded and trusted. Matching these lines as ordinary entries (same port
    rules, public API) says which keys are revoked for a host.
    """
    lines = []
    for line in known_hosts_text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0] == "@revoked":
            lines.append(words[1])
    return asyncssh.import_known_hosts("\n".join(lines) + "\n")


@dataclass
class _HostKeyVerdict:
    """What the host-key gate decided, read back after a failed handshake."""

    outcome: str = ""  # "", "recorded", "unknown", "changed", "revoked"
    fingerprint: str = ""
    recorded_to: str = ""


class _HostKeyGate(asyncssh.SSHClient):
    """asyncssh calls `validate_host_public_key` only for keys not already trusted.

    That is exactly the moment to tell an *unknown* host (no entry at all: record it
    under accept-new) from a *changed* one (an entry with another key: always refuse)
    and from a *revoked* key (`@revoked` in known_hosts: always refuse, never record).
    """

    def __init__(self, target: SshTarget, known: asyncssh.SSHKnownHosts, verdict: _HostKeyVerdict,
                 revoked: asyncssh.SSHKnownHosts | None = None):
        self._target = target
        self._known = known
        self._verdict = verdict
        self._revoked = revoked

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self._verdict.fingerprint = key.get_fingerprint()
        if self._revoked is not None and key in self._revoked.match(host, addr, port)[0]:
            self._verdict.outcome = "revoked"
            return False
        host_keys, ca_keys, *_ = self._known.match(host, addr, port)
        if host_keys or ca_keys:
            self._verdict.outcome = "changed"
            return False
        if self._target.host_key_policy != "accept-new" or not self._target.gpuctl_known_hosts:
            self._verdict.outcome = "unknown"
            return False
        path = Path(self._target.gpuctl_known_hosts)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{_known_hosts_pattern(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
        with path.open("a") as fh:
            fh.write(line)
        self._verdict.outcome = "recorded"
        self._verdict.recorded_to = str(path)
        return True


def _cipher_preference() -> list[str]:
    available = [a.decode() for a in asyncssh.encryption.get_default_encryption_algs()]
    preferred = [a for a in _PREFERRED_CIPHERS if a in available]
    return preferred + [a for a in available if a not in preferred]


def _print_notice(text: str) -> None:
    print(text, file=sys.stderr)


async def connect(target: SshTarget, *, notice: Callable[[str], None] | None = None) -> asyncssh.SSHClientConnection:
    """Open an SSH connection to `target`, or raise `SshFailure` in plain words.

    The whole handshake (TCP, key exchange, auth) is bounded by `connect_timeout`.
    When accept-new records a host key, `notice` (default: a line on stderr, as
    OpenSSH's "Permanently added") gets "recorded new host key for POD (SHA256:...) in
    PATH": trusting a key on first use is only as good as someone being able to check
    the fingerprint, so it is always said.
    """
    text = _read_known_hosts(target)
    known = asyncssh.import_known_hosts(text)
    revoked = _revoked_entries(text)
    verdict = _HostKeyVerdict()
    options: dict[str, Any] = dict(
        port=target.port,
        username=target.user,
        known_hosts=known,
        client_factory=lambda: _HostKeyGate(target, known, verdict, revoked),
        encryption_algs=_cipher_preference(),
        connect_timeout=target.connect_timeout,
        keepalive_interval=15,
        keepalive_count_max=3,
        config=list(target.ssh_config_files) or None,
    )
    if target.identities:
        options["client_keys"] = list(target.identities)
    if target.proxy_jump:
        options["tunnel"] = target.proxy_jump
    # Always said, never left to asyncssh's own lookup of `target.hostname` (the alias
    # is what the SSH config names). Run as OpenSSH runs it, through the shell; the host
    # key is still checked by the gate above, whatever the config says about checking.
    options["proxy_command"] = None
    proxy_log = None
    if target.proxy_command:
        # asyncssh reads the command's stderr as if the server had sent it (any warning
        # the proxy prints breaks the handshake), so it goes to a file instead: read
        # back for the error message, and never onto the user's terminal. The shell
        # stays (no exec) because it holds asyncssh's stderr pipe: that pipe closing
        # ends the connection too.
        fd, proxy_log = tempfile.mkstemp(prefix="gpuctl-proxy-", suffix=".log")
        os.close(fd)
        script = 'gpuctl_proxy_log=$1; shift; {\n' + target.proxy_command + '\n} 2>>"$gpuctl_proxy_log"; exit $?'
        options["proxy_command"] = ["/bin/sh", "-c", script, "sh", proxy_log]
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(target.hostname, **options), timeout=target.connect_timeout + 1
        )
    except BaseException as exc:  # noqa: BLE001 - classified and re-raised below
        if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
            _take_proxy_log(proxy_log)
            raise
        failure = None
        if isinstance(exc, _HANDSHAKE_LOST) and not verdict.fingerprint:
            failure = await _diagnose_host_key_types(target, options, known)
        failure = failure or classify_connect_error(exc, target, verdict)
        said = _take_proxy_log(proxy_log)
        if said and failure.kind not in _HOST_KEY_KINDS:
            failure = SshFailure(failure.kind, f"{failure.message} (its ProxyCommand said: {said})")
        raise failure from exc
    _take_proxy_log(proxy_log)
    if verdict.outcome == "recorded":
        (notice or _print_notice)(
            f"recorded new host key for {target.name} ({target.display}, {verdict.fingerprint}) "
            f"in {verdict.recorded_to}")
    return conn


def _take_proxy_log(path: str | None) -> str:
    """The last line a ProxyCommand wrote on stderr (its file removed), or ""."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    with contextlib.suppress(OSError):
        os.unlink(path)
    return lines[-1][:300] if lines else ""


_HOST_KEY_KINDS = (FailureKind.HOST_KEY_UNKNOWN, FailureKind.HOST_KEY_CHANGED, FailureKind.HOST_KEY_REVOKED,
                   FailureKind.HOST_KEY_ALGORITHM)

_HANDSHAKE_LOST = (asyncssh.ConnectionLost, asyncssh.KeyExchangeFailed, ConnectionResetError, BrokenPipeError)
"""How a server that shares no host key type with us ends the handshake: OpenSSH logs
"no matching host key type found" and just closes the connection."""


class _KeyLook(asyncssh.SSHClient):
    """Accepts no key: only notes which one the server presented."""

    def __init__(self, seen: dict[str, Any]):
        self._seen = seen

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self._seen.update(host=host, addr=addr, key=key)
        return False


async def _diagnose_host_key_types(target: SshTarget, options: dict[str, Any],
                                   known: asyncssh.SSHKnownHosts) -> SshFailure | None:
    """Why a handshake was dropped, when it was over host key types; else None.

    asyncssh offers only the key types known_hosts holds for a host (or, for a new one,
    its defaults, which leave out ssh-dss). A server with none of them closes the
    connection without a word, which reads as "lost". So look once more, offering every
    type asyncssh can verify and trusting none, and name the key the server presents:
    a type other than the known one is a changed key, ssh-dss a refused one.
    """
    seen: dict[str, Any] = {}
    look = dict(options, known_hosts=asyncssh.import_known_hosts(""), client_factory=lambda: _KeyLook(seen),
                server_host_key_algs=[a.decode() for a in get_public_key_algs()])
    # Any error here ends the look: a diagnosis must never hide the failure it explains.
    with contextlib.suppress(Exception):
        conn = await asyncio.wait_for(asyncssh.connect(target.hostname, **look),
                                      timeout=target.connect_timeout + 1)
        conn.close()  # not reached: _KeyLook accepts no key
    key = seen.get("key")
    if key is None:
        return None
    # The lookup asyncssh made (port None for 22) says what the first try offered.
    trusted, ca_keys, *_ = known.match(seen["host"], seen["addr"], target.port if target.port != 22 else None)
    if ca_keys:
        return None  # certificate types were offered too; this look cannot see certificates
    offered = {a for k in trusted for a in k.sig_algorithms} if trusted else set(get_default_public_key_algs())
    if offered & set(key.sig_algorithms):
        return None  # we would have taken this key: the connection was lost for another reason
    where, kind = target.display, key.get_algorithm()
    fp = key.get_fingerprint()
    if trusted:
        held = ", ".join(sorted({k.get_algorithm() for k in trusted}))
        return SshFailure(
            FailureKind.HOST_KEY_CHANGED,
            f"HOST KEY CHANGED for {where}: known_hosts holds a {held} key for it, but the server now "
            f"offers only a {kind} key ({fp}). This can mean someone is intercepting the connection, "
            "or the machine was re-created. gpuctl will not connect; if the change is expected, remove "
            f"the old entry (ssh-keygen -R {shlex.quote(_known_hosts_pattern(target.hostname, target.port))}) "
            "and retry.")
    weak = " (DSA is weak: OpenSSH disabled it in 7.0)" if kind == "ssh-dss" else ""
    return SshFailure(
        FailureKind.HOST_KEY_ALGORITHM,
        f"no host key type in common with {where}: the server offers only a {kind} key ({fp}), "
        f"a type gpuctl does not accept{weak}. Give the server an Ed25519 host key "
        "(ssh-keygen -A, then restart sshd).")


def classify_connect_error(exc: BaseException, target: SshTarget, verdict: _HostKeyVerdict | None = None) -> SshFailure:
    """Turn any exception from a connect attempt into an `SshFailure`."""
    where = target.display
    if isinstance(exc, SshFailure):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        fp = f" (server key {verdict.fingerprint})" if verdict and verdict.fingerprint else ""
        # asyncssh refuses a revoked key itself when known_hosts also trusts it (then
        # the gate never sees it, and says so only in its message).
        if (verdict and verdict.outcome == "revoked") or "revoked" in str(exc).lower():
            return SshFailure(
                FailureKind.HOST_KEY_REVOKED,
                f"host key REVOKED for {where}{fp}: known_hosts marks the server's key @revoked. "
                "gpuctl will not connect with a revoked key, whatever the host_key policy; the pod "
                "needs a new host key.",
            )
        if verdict and verdict.outcome == "changed":
            return SshFailure(
                FailureKind.HOST_KEY_CHANGED,
                f"HOST KEY CHANGED for {where}{fp}: the server's key differs from the one "
                "recorded in known_hosts. This can mean someone is intercepting the "
                "connection, or the machine was re-created. gpuctl will not connect; if the "
                "change is expected, remove the old entry (ssh-keygen -R "
                f"{shlex.quote(_known_hosts_pattern(target.hostname, target.port))}) and retry.",
            )
        return SshFailure(
            FailureKind.HOST_KEY_UNKNOWN,
            f"host key unknown for {where}{fp}: it is not in known_hosts and the pod's "
            "host_key policy is strict. Verify the key and add it, or set "
            "`host_key: accept-new` to record it on first connect.",
        )
    if isinstance(exc, socket.gaierror):
        return SshFailure(FailureKind.DNS, f"name not resolved: {target.hostname!r} ({exc.strerror or exc})")
    if isinstance(exc, ConnectionRefusedError):
        return SshFailure(FailureKind.REFUSED, f"connection refused by {target.hostname}:{target.port} (is sshd running, is the port right?)")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return SshFailure(FailureKind.TIMEOUT, f"timed out after {target.connect_timeout:g}s connecting to {where}")
    if isinstance(exc, asyncssh.PermissionDenied):
        keys = ", ".join(target.identities) or "ssh-agent and default keys"
        return SshFailure(FailureKind.AUTH, f"authentication failed for {where} (tried {keys})")
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) in target.identities:
        return SshFailure(FailureKind.AUTH, f"identity file {exc.filename} does not exist (set `identity:` for the pod, or IdentityFile in ~/.ssh/config)")
    if isinstance(exc, asyncssh.KeyImportError):
        return SshFailure(FailureKind.AUTH, f"could not load identity file for {where}: {exc} (an encrypted key must be loaded into ssh-agent)")
    if isinstance(exc, (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError)):
        return SshFailure(FailureKind.LOST, f"connection to {where} lost during handshake: {exc}")
    if isinstance(exc, asyncssh.DisconnectError):
        return SshFailure(FailureKind.LOST, f"{where} disconnected: {exc.reason or exc}")
    if isinstance(exc, OSError):
        return SshFailure(FailureKind.OTHER, f"cannot reach {where}: {exc.strerror or exc}")
    return SshFailure(FailureKind.OTHER, f"cannot connect to {where}: {type(exc).__name__}: {exc}")


REMOTE_ENCODING = "utf-8"
REMOTE_ERRORS = "surrogateescape"
"""How text crosses to and from a pod: UTF-8, with every byte that is not UTF-8 kept as
a lone surrogate (`os.fsdecode` does the same). A file name is bytes on the pod; with
asyncssh's default strict decoding the first invalid byte (`step_3_\\xff.pt`) closes the
whole connection mid-listing, so the listing comes back cut short. Decoded this way,
`command_bytes` turns such a name back into the very same bytes when it is sent."""


def command_bytes(command: str) -> bytes:
    """`command` as the bytes the pod must get: a name read back with surrogateescape
    (above) is sent as the bytes it came from. asyncssh encodes a `str` command as strict
    UTF-8 (a lone surrogate would raise there), so callers pass these bytes instead."""
    return command.encode(REMOTE_ENCODING, REMOTE_ERRORS)


async def run_command(
    conn: asyncssh.SSHClientConnection, command: str, *, timeout: float, check: bool = True
) -> asyncssh.SSHCompletedProcess:
    """Run one remote command with a timeout; failures become `SshFailure(COMMAND)`.

    The command must already be built from `shlex.quote`d parts. Its output is decoded
    losslessly (`REMOTE_ERRORS`): any byte a pod prints comes back, none ends the channel.
    """
    try:
        result = await asyncio.wait_for(
            conn.run(command_bytes(command), check=False, encoding=REMOTE_ENCODING, errors=REMOTE_ERRORS),
            timeout=timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise SshFailure(FailureKind.TIMEOUT, f"remote command timed out after {timeout:g}s") from None
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, OSError) as exc:
        raise SshFailure(FailureKind.LOST, f"connection lost: {exc}") from exc
    if check and result.exit_status not in (0, None):
        stderr = str(result.stderr or "").strip().splitlines()
        detail = stderr[-1] if stderr else f"exit status {result.exit_status}"
        raise SshFailure(FailureKind.COMMAND, f"remote command failed: {detail}")
    return result


@dataclass
class Backoff:
    """Exponential backoff with jitter (half fixed, half random), so many pods that dropped together do
    not reconnect in lockstep."""

    base: float = 1.0
    cap: float = 60.0
    attempt: int = 0
    rng: Any = field(default=None, repr=False)

    def next_delay(self) -> float:
        import random

        rng = self.rng or random
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0
