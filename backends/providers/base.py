"""What every provider backend offers, and the plain data it returns.

A provider module turns one cloud's API (or CLI) into four calls: `get`, `list`,
`stop`, `terminate`. It knows nothing of gpuctl's config: the sessions layer passes
plain values (instance id, server URL, the key as a `Secret`, options).

States are normalised to a handful of words (`InstanceState`) so policy code never
learns a provider's vocabulary; the provider's own word is kept in `raw_status`.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class InstanceState:
    """Normalised instance states (what `InstanceInfo.state` holds).

    The state is what the instance *is*; why it got there is separate: a spot pod
    the provider took back is `stopped` (or `terminated`) with `preempted=True`.
    """

    STARTING = "starting"        # provisioning, booting, loading the image, restarting
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"          # compute released or paused; disks kept
    TERMINATING = "terminating"
    TERMINATED = "terminated"    # gone; nothing left to bill
    ERROR = "error"
    UNKNOWN = "unknown"


class Secret:
    """An API key that never shows itself: `str()` and `repr()` print `***`.

    The value is read with `reveal()` only where it goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


_MIN_SECRET = 4
_MIN_B64_CORE = 8


def _b64_cores(raw: bytes) -> set[str]:
    """The base64 text of `raw` wherever it sits inside a longer base64 string.

    Base64 works in 3-byte groups, so the same key encodes three ways depending on
    how many bytes come before it ("key", "user:key", "x:key" in HTTP Basic auth):
    for each offset, keep only the characters whose 6 bits all come from `raw`.
    Those appear verbatim whatever precedes or follows, padded or not.
    """
    import base64

    cores: set[str] = set()
    for lead in range(3):
        encoded = base64.b64encode(b"\0" * lead + raw).decode().rstrip("=")
        first = -(-8 * lead // 6)                 # first char starting at or after bit 8*lead
        last = (8 * (lead + len(raw))) // 6      # chars ending at or before the key's last bit
        core = encoded[first:last]
        if len(core) >= _MIN_B64_CORE:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return cores


def _secret_pattern(secret: str) -> str:
    """A regex for `secret` as a provider might echo it: as is, in another case,
    URL-encoded (fully or in part, `%2f` or `%2F`, `+` for a space), or base64 of it
    alone or inside `key:` / `:key` (HTTP Basic auth), std or URL-safe, with or
    without padding. Matched case-insensitively: over-redacting is the safe side."""
    from urllib.parse import quote

    chars = []
    for ch in secret:
        options = [re.escape(ch), re.escape(quote(ch, safe=""))]
        if ch == " ":
            options.append(r"\+")
        chars.append("(?:" + "|".join(dict.fromkeys(options)) + ")")
    forms = ["".join(chars)]
    forms += sorted((re.escape(c) for c in _b64_cores(secret.encode())), key=len, reverse=True)
    return "|".join(forms)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret (of 4 or more characters) replaced by `***`, in every
    form a provider has been seen to echo it (see `_secret_pattern`). The one place
    keys are hidden: every provider message goes through here."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            text = re.sub(_secret_pattern(secret), "***", text, flags=re.IGNORECASE)
    return text


class ProviderError(Exception):
    """A provider refused or failed a call, in plain words.

    Attributes:
        provider: the provider type (`runpod`, ...).
        status: the HTTP status, or None (a CLI failure, a connection error).
        code: the provider's own error code (`global/invalid-api-key`,
            `no_such_instance`, ...), or None when it gave none.
        message: what the provider said, key redacted.
    """

    def __init__(self, provider: str, status: int | None, code: str | None, message: str) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        bits = [f"HTTP {self.status}" if self.status else None, self.code]
        detail = ", ".join(b for b in bits if b)
        return f"{self.provider}: {self.message}" + (f" ({detail})" if detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider!r}, {self.status!r}, {self.code!r}, {self.message!r})"


class InstanceNotFound(ProviderError):
    """The provider does not know the instance (never existed, or already gone)."""


class Unsupported(ProviderError):
    """The provider cannot do this at all (Lambda has no stop)."""


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached: its CLI is not installed, the network is down,
    or it did not answer within the call's deadline."""


UNREADABLE = "the provider answered something gpuctl cannot read"


class UnreadableAnswer(ProviderError):
    """The provider answered "success", but not in a shape gpuctl can read: a proxy's
    `null` or HTML page, `{}`, a list where a mapping belongs.

    Never read as "no such instance": a teardown or stop that took an unreadable
    answer for "already gone" would report success and send nothing.
    """


def unreadable(provider: str, request: str, got: str, status: int | None = 200) -> UnreadableAnswer:
    """The `UnreadableAnswer` for `request` ("GET /v2/pods/x") that returned `got`
    (what came back, in words: "null", "an object without `instances`")."""
    return UnreadableAnswer(provider, status, None, f"{UNREADABLE} ({request}: {got})")


def shape(value: object) -> str:
    """What a JSON value is, in words, for `unreadable` (never its content: it may echo
    a key)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an empty object" if not value else "an object with keys " + ", ".join(
            sorted(str(k)[:40] for k in value)[:6])
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, and what each action keeps and destroys, in plain words.

    Attributes:
        can_stop: whether `stop` exists (else `stop_refusal` says why not).
        stop_keeps: what survives a stop.
        stop_loses: what a stop loses, and what keeps billing.
        teardown_destroys: what terminate destroys (and what may survive and bill).
        stop_refusal: why there is no stop, and what to do instead.
        can_list: whether `list` works (for `pods import`).
        can_query: whether `get` works (an `ssh` pod has no API to ask).
        stop_loses_data: a stop wipes a disk training may write checkpoints to
            (RunPod's container disk, EC2 instance store, GCP local SSD, Azure's
            temporary disk), so `stop` runs the teardown guard first. The one
            place that rule is recorded, per provider (PROVIDERS.md section 1.3).
    """

    can_stop: bool
    stop_keeps: str
    stop_loses: str
    teardown_destroys: str
    stop_refusal: str | None = None
    can_list: bool = True
    can_query: bool = True
    stop_loses_data: bool = False


@dataclass(frozen=True)
class InstanceInfo:
    """One instance as the provider reports it; None where it says nothing.

    Attributes:
        id: the provider's id, as text.
        state: an `InstanceState` value.
        raw_status: the provider's own status word(s), for messages.
        name: the instance's name or label.
        intended_state: what the provider is trying to reach (Vast's
            `intended_status`, RunPod's desired status), normalised, when given.
        preempted: the provider stopped or removed it (spot/bid/interruptible).
        interruptible: a spot/bid/interruptible instance, when known.
        price_per_hour: USD per hour, when the API says.
        started_at: unix time the instance (last) started, when known.
        uptime_s: seconds running, when the API says (else derived from started_at).
        ssh_host, ssh_port, ssh_user: how to reach it over SSH, when known.
        ssh_proxied: the SSH endpoint is a proxy with an interactive shell only
            (RunPod's `ssh.runpod.io`): no exec channel, no SFTP.
        gpu_name, gpu_count: what it runs on, when the API says.
        note: something the provider could not tell, in plain words (e.g. why
            preemption is unknown), or None.
    """

    id: str
    state: str
    raw_status: str | None = None
    name: str | None = None
    intended_state: str | None = None
    preempted: bool = False
    interruptible: bool | None = None
    price_per_hour: float | None = None
    started_at: float | None = None
    uptime_s: float | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str | None = None
    ssh_proxied: bool = False
    gpu_name: str | None = None
    gpu_count: int | None = None
    note: str | None = None

    def running_seconds(self, now: float | None = None) -> float | None:
        """Seconds since it started: the API's uptime, else now - started_at."""
        if self.uptime_s is not None:
            return self.uptime_s
        if self.started_at is not None:
            return max(0.0, (now if now is not None else time.time()) - self.started_at)
        return None


@dataclass(frozen=True)
class ProviderSettings:
    """Everything a provider module needs, as plain values (built by `sessions`).

    Attributes:
        api_url: server root replacing the official one, or None.
        key: the API key, or None (CLI providers, ssh).
        options: the provider entry's options (region, project, ...).
        timeout: seconds per HTTP request or CLI call.
    """

    api_url: str | None = None
    key: Secret | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 20.0


class Provider(abc.ABC):
    """One cloud's instances. Subclasses set `type` and `capabilities`."""

    type: str = ""
    capabilities: Capabilities

    @abc.abstractmethod
    async def get(self, instance_id: str) -> InstanceInfo:
        """The instance now. Raises `InstanceNotFound` if the provider does not know it."""

    @abc.abstractmethod
    async def list(self) -> list[InstanceInfo]:
        """The account's instances (what the API lists; some list running ones only)."""

    async def stop(self, instance_id: str) -> None:
        """Ask the provider to stop the instance (returns once the request is accepted).

        Raises:
            Unsupported: where there is no stop (see `capabilities.stop_refusal`).
        """
        raise Unsupported(self.type, None, None, self.capabilities.stop_refusal or "this provider has no stop")

    @abc.abstractmethod
    async def terminate(self, instance_id: str) -> None:
        """Ask the provider to destroy the instance. `InstanceNotFound` if already gone."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook: CLI providers hold nothing to release
        """Release connections (HTTP providers close their client)."""

    async def __aenter__(self) -> "Provider":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --- small parsing helpers shared by the modules ------------------------------------


def parse_time(value: Any) -> float | None:
    """Unix seconds from an ISO 8601 string (`...Z` or with offset) or an epoch number."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # Python 3.10 rejects fractions that are not 3 or 6 digits ("...:30.12345Z").
        head, dot, rest = text.partition(".")
        if not dot:
            return None
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits):]
        try:
            parsed = datetime.fromisoformat(f"{head}.{(digits + '000000')[:6]}{tail}")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def as_float(value: Any) -> float | None:
    """A number from a number or numeric text; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None and number == int(number) else None


def as_dict(value: Any) -> dict[str, Any]:
    """A nested object of a provider's reply, or an empty one when it is missing or not
    an object, so a reader chains `.get` without a None check at each level."""
    return value if isinstance(value, dict) else {}


def as_text(value: Any) -> str | None:
    """Stripped text, or None for missing/empty (Vast pads strings with whitespace)."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
