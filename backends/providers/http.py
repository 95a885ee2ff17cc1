"""The one HTTP client every API provider uses: timeouts, retries, plain errors, no leaks.

* One overall deadline per call (`timeout`, retries and their waits included): a
  provider that answers in 40 s makes a call fail after `timeout` seconds with
  "RunPod did not answer within 20 s", not after four timed-out attempts in a row.
  A request that timed out is not retried: the deadline is spent.
* Retries with exponential backoff on 429 and 5xx and on connection errors, while
  the deadline allows. A `Retry-After` header (seconds or an HTTP date) is honoured
  up to `max_retry_after`; a provider asking for longer gets a `ProviderError`
  saying how long, at once, rather than a UI frozen for minutes. Vast's 429s carry
  no `Retry-After`, so backoff alone applies there. Stop and terminate are safe to
  repeat, which is why POST/PUT/DELETE are retried too.
* A 2xx answer that is not what the API sends (a proxy's `null` or HTML, `{}`, a
  list for a mapping) is an `UnreadableAnswer`, never "no such instance": `json`
  checks the top-level type, and the provider modules check what they read.
* Error bodies become `ProviderError(provider, status, code, message)` with the
  provider's own code, from each API's envelope (see `error_from_body`).
* The key is redacted from every message, log line and repr this module produces.
* `sleep` and `transport` are injectable, so tests run against a local server with
  no real waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx

from backends.providers.base import (
    InstanceNotFound,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    Secret,
    UnreadableAnswer,
    redact,
    shape,
    unreadable,
)

log = logging.getLogger("gpuctl.providers")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_UNSET: Any = object()
_CODE_LIKE = re.compile(r"[A-Za-z0-9_./:-]+")
_MAX_MESSAGE = 400

ErrorParser = Callable[[httpx.Response], "tuple[str | None, str]"]


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <key>`, added per request so the key lives in one place."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _first_text(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def error_from_body(status: int, body: bytes | str, reason: str = "") -> tuple[str | None, str]:
    """(provider code, message) from an error body, whatever the provider's envelope.

    Shapes understood (PROVIDERS.md):
    * Lambda: `{"error": {"code", "message", "suggestion"}}`
    * RunPod v2 (RFC 9457): `{"title", "status", "detail", "errors": [str]}`
    * RunPod GraphQL: `{"errors": [{"message", "extensions": {"code"}}]}`
    * Vast: `{"success": false, "error": "<code>", "msg": "..."}`, or `{"detail"}`,
      or plain text ("API requests too frequent ...")
    * Thunder: `{"code": <int>, "error": "<type>", "message"}`
    * TensorDock: `{"error": "Hostnode unavailable", "status": 400}`
    * Crusoe: `{"code", "error_id", "message", "reason"}`
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        data = jsonlib.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):  # Lambda
            message = _first_text(err.get("message"), err.get("code")) or reason
            suggestion = _first_text(err.get("suggestion"))
            if suggestion:
                message += f" ({suggestion})"
            return _first_text(err.get("code")), message
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # GraphQL
            messages = [e.get("message") for e in errors if isinstance(e, dict) and e.get("message")]
            ext = errors[0].get("extensions")
            code = _first_text(ext.get("code")) if isinstance(ext, dict) else None
            return code, "; ".join(str(m) for m in messages) or reason
        if "title" in data or ("detail" in data and "status" in data):  # RFC 9457 problem
            message = _first_text(data.get("detail"), data.get("title")) or reason
            if isinstance(errors, list) and errors:
                message += ": " + "; ".join(str(e) for e in errors)
            return _first_text(data.get("title")), message
        said = _first_text(data.get("msg"), data.get("message"), data.get("detail"))
        code_value = data.get("code")
        code = code_value if isinstance(code_value, str) and _CODE_LIKE.fullmatch(code_value) else None
        if isinstance(err, str) and err.strip():
            if said is None:  # TensorDock: the error is the message
                return (err.strip() if _CODE_LIKE.fullmatch(err.strip()) else code), err.strip()
            code = err.strip() if _CODE_LIKE.fullmatch(err.strip()) else code
        code = code or _first_text(data.get("reason"))
        return code, said or reason or f"HTTP {status}"
    if text.startswith("<"):  # an HTML error page from a proxy: say only the status
        return None, reason or f"HTTP {status}"
    if text:
        return None, text[:_MAX_MESSAGE]
    return None, reason or f"HTTP {status}"


class ApiClient:
    """An httpx.AsyncClient bound to one provider's server, with the policy above.

    Args:
        provider: the provider type, named in every error.
        base_url: the server root (official one, or `api_url` from config).
        auth: how to authenticate (BearerAuth, or Crusoe's signer).
        secrets: values to redact from every message (the key, the key id).
        timeout: seconds for each call, all its attempts and waits together.
        label: the provider's name as people write it ("RunPod"), for messages.
        retries: extra attempts after the first, on 429/5xx/connection errors.
        backoff: first backoff delay in seconds, doubled per attempt, capped at
            `backoff_cap`.
        max_retry_after: the longest `Retry-After` honoured by waiting.
        sleep: the coroutine used to wait (tests pass one that records delays).
        transport: an httpx transport (tests may pass a MockTransport).
        parse_error: (response) -> (code, message); defaults to `error_from_body`.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        secrets: Iterable[Secret | str | None] = (),
        timeout: float = 20.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        max_retry_after: float = 20.0,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        parse_error: ErrorParser | None = None,
        headers: Mapping[str, str] | None = None,
        label: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.label = label or provider
        self.timeout = timeout
        self._clock = clock
        self.base_url = base_url.rstrip("/")
        self._secrets = tuple(
            s.reveal() if isinstance(s, Secret) else s for s in secrets if s
        )
        self.retries = retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._sleep = sleep or asyncio.sleep
        self._parse_error = parse_error or (
            lambda r: error_from_body(r.status_code, r.content, r.reason_phrase)
        )
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "gpuctl", **(headers or {})},
            follow_redirects=False,  # a redirect would resend the key to wherever it points
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.provider!r}, {self.base_url!r})"

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def error(self, response: httpx.Response, *, not_found: bool | None = None) -> ProviderError:
        """The `ProviderError` for a failed response (InstanceNotFound for a 404)."""
        code, message = self._parse_error(response)
        is_missing = response.status_code == 404 if not_found is None else not_found
        cls = InstanceNotFound if is_missing else ProviderError
        return cls(self.provider, response.status_code, code and self.redact(code), self.redact(message))

    def unreadable(self, method: str, path: str, got: str, status: int | None = 200) -> UnreadableAnswer:
        """The error for a 2xx answer to `method path` that is not what the API sends."""
        return unreadable(self.provider, f"{method} {path}", self.redact(got), status)

    def _too_slow(self, method: str, path: str) -> ProviderUnavailable:
        return ProviderUnavailable(self.provider, None, None,
                                   f"{self.label} did not answer within {self.timeout:g} s ({method} {path})")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _UNSET,
        params: Mapping[str, Any] | None = None,
        ok: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response, else raise `ProviderError`.

        Args:
            path: appended to the server root (`/v2/pods`).
            json: the JSON body, if any (`{}` is sent as `{}`).
            ok: a test of success other than "2xx" (e.g. to hand a 404 back).
        """
        kwargs: dict[str, Any] = {"params": params}
        if json is not _UNSET:
            kwargs["json"] = json
        is_ok = ok or (lambda r: r.is_success)
        deadline = self._clock() + self.timeout
        attempt = 0
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise self._too_slow(method, path)
            try:
                # httpx's timeout is per read; wait_for bounds the whole attempt (a
                # server trickling bytes), both by what is left of the one deadline.
                response = await asyncio.wait_for(
                    self._client.request(method, path, timeout=httpx.Timeout(left), **kwargs), left)
            except (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError):
                raise self._too_slow(method, path) from None
            except httpx.TransportError as exc:
                detail = self.redact(str(exc) or type(exc).__name__)
                delay = self._backoff_delay(attempt)
                if attempt < self.retries and delay < deadline - self._clock():
                    log.info("%s %s %s: %s; retrying in %.1fs", self.provider, method, path, detail, delay)
                    attempt += 1
                    await self._sleep(delay)
                    continue
                host = httpx.URL(self.base_url).host
                raise ProviderUnavailable(self.provider, None, None, f"cannot reach {host}: {detail}") from None
            log.debug("%s %s %s -> %s", self.provider, method, path, response.status_code)
            if is_ok(response):
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                delay = self._retry_delay(response, attempt)
                if delay < deadline - self._clock():
                    log.info("%s %s %s: HTTP %s; retrying in %.1fs", self.provider, method, path,
                             response.status_code, delay)
                    attempt += 1
                    await self._sleep(delay)
                    continue
            raise self.error(response)

    async def json(self, method: str, path: str, *, expect: type | tuple[type, ...] | None = None,
                   **kwargs: Any) -> Any:
        """`request`, then the body as JSON (None for an empty body).

        Args:
            expect: the type(s) the body must have (`dict`; `(dict, type(None))` where
                an empty body is fine too); anything else is an `UnreadableAnswer`.
        """
        response = await self.request(method, path, **kwargs)
        text = response.content.strip()
        if not text:
            body = None
        else:
            try:
                body = response.json()
            except ValueError:
                got = "an HTML page (a proxy's?)" if text[:1] == b"<" else "something that is not JSON"
                raise self.unreadable(method, path, got, response.status_code) from None
        if expect is not None and not isinstance(body, expect):
            got = "an empty body" if not text else shape(body)
            raise self.unreadable(method, path, got, response.status_code)
        return body

    def _backoff_delay(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff * (2 ** attempt))

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is None:
            return self._backoff_delay(attempt)
        if wait > self.max_retry_after:
            _code, message = self._parse_error(response)
            raise ProviderError(
                self.provider, response.status_code, None,
                self.redact(f"rate limited; the provider asks to wait {wait:.0f}s before retrying ({message})"),
            )
        return wait

    async def aclose(self) -> None:
        await self._client.aclose()


def segment(value: str) -> str:
    """An id made safe as one URL path segment (`/`, `?`, `#` and `..` cannot escape it)."""
    from urllib.parse import quote

    quoted = quote(str(value), safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


class HttpProvider(Provider):
    """A provider reached over HTTP with a bearer key (most of them).

    Subclasses set `type`, `default_url` and `capabilities`, and may set
    `client_options` (e.g. Vast's gentler backoff). `transport` and `sleep` are for tests.
    """

    default_url: str = ""
    client_options: Mapping[str, Any] = {}

    def __init__(self, settings: ProviderSettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[Any]] | None = None, **_: Any) -> None:
        from backends.providers.registry import SPECS

        known = SPECS.get(self.type)
        self.settings = settings
        self.client = ApiClient(
            self.type,
            settings.api_url or self.default_url,
            label=known.label if known else self.type,
            auth=self.make_auth(settings),
            secrets=self.secrets(settings),
            timeout=settings.timeout,
            sleep=sleep,
            transport=transport,
            **self.client_options,
        )

    def make_auth(self, settings: ProviderSettings) -> httpx.Auth | None:
        return BearerAuth(settings.key) if settings.key else None

    def secrets(self, settings: ProviderSettings) -> tuple[Secret | None, ...]:
        return (settings.key,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client.base_url!r})"

    async def aclose(self) -> None:
        await self.client.aclose()
