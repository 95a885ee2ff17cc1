"""Vast.ai: `/api/v1/instances/` to list (paginated), `/api/v0/instances/{id}/` for the rest.

Quirks handled here (PROVIDERS.md section 3):
* `GET /api/v0/instances/{id}/` returns `{"instances": {...}}`: a single object under
  a plural key, which may be `null` for an unknown id. Only that documented shape
  means "gone": a body without the `instances` key (a proxy's `null`, `{}`, HTML, a
  list) is an `UnreadableAnswer`, so teardown and stop never take it for success.
* Stop and destroy answer `{"success": true}`; anything else is refused or unreadable.
* String values can carry trailing whitespace (`"198.51.100.20\\n"`); every string
  is stripped, as vast-cli does.
* 429s are often plain text and carry no `Retry-After`; vast-cli backs off from
  0.15 s by x1.5, so backoff alone applies here too.
* `{"error": "no_such_instance"}` means it is already gone.
* Trailing slashes are kept on every path, as the official CLI sends them.

The server root is `https://console.vast.ai`; vast-cli's `VAST_URL` overrides it
(read by the sessions layer, see the registry).
"""

from __future__ import annotations

from typing import Any

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceNotFound,
    InstanceState,
    ProviderError,
    as_float,
    as_int,
    as_text,
    parse_time,
    shape,
)
from backends.providers.http import HttpProvider, segment

DEFAULT_URL = "https://console.vast.ai"

_PAGE = 25          # the API's maximum page size
_MAX_PAGES = 200    # 5000 instances: a guard against a server that never stops paging
_GONE_CODES = frozenset({"no_such_instance", "not_found"})

_STATES = {
    "created": InstanceState.STARTING,
    "loading": InstanceState.STARTING,
    "rebooting": InstanceState.STARTING,
    "restarting": InstanceState.STARTING,
    "running": InstanceState.RUNNING,
    "stopped": InstanceState.STOPPED,
    "exited": InstanceState.STOPPED,
    "frozen": InstanceState.STOPPED,
    "offline": InstanceState.UNKNOWN,   # the host lost contact with Vast
    "unknown": InstanceState.UNKNOWN,   # no heartbeat
}


def strip_strings(value: Any) -> Any:
    """Every string in a JSON value, stripped (Vast pads some with whitespace)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: strip_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_strings(v) for v in value]
    return value


def _ssh(inst: dict[str, Any]) -> tuple[str | None, int | None]:
    """Direct `public_ipaddr` + mapped 22/tcp when present, else the ssh proxy gateway."""
    ports = inst.get("ports")
    mapped = ports.get("22/tcp") if isinstance(ports, dict) else None
    ip = as_text(inst.get("public_ipaddr"))
    if ip and isinstance(mapped, list) and mapped and isinstance(mapped[0], dict):
        port = as_int(mapped[0].get("HostPort"))  # a string in the API
        if port:
            return ip, port
    host, port = as_text(inst.get("ssh_host")), as_int(inst.get("ssh_port"))
    if host and port:
        # vast-cli: the jupyter runtype's proxy port is one above ssh_port.
        if "jupyter" in (as_text(inst.get("image_runtype")) or ""):
            port += 1
        return host, port
    return None, None


def instance_from_api(inst: dict[str, Any]) -> InstanceInfo:
    """An `InstanceInfo` from one (already stripped) Vast instance object."""
    actual = as_text(inst.get("actual_status"))
    intended = as_text(inst.get("intended_status"))
    cur = as_text(inst.get("cur_state"))
    if actual is None:  # null while provisioning
        state = InstanceState.STOPPED if intended == "stopped" else InstanceState.STARTING
    else:
        state = _STATES.get(actual.lower(), InstanceState.UNKNOWN)
    if cur == "unloaded":  # "released on destroy"
        state = InstanceState.TERMINATED
    is_bid = bool(inst.get("is_bid"))
    # [unverified] An outbid interruptible instance is paused by Vast while its owner
    # still intends it to run; dstack's variant (all three states "stopped") cannot be
    # told from a user stop, so the simpler rule is used.
    preempted = is_bid and state == InstanceState.STOPPED and intended == "running"
    host, port = _ssh(inst)
    raw = actual or "null"
    if intended and intended != actual:
        raw += f" (intended {intended})"
    running = state == InstanceState.RUNNING
    return InstanceInfo(
        id=str(inst.get("id")),
        state=state,
        raw_status=raw,
        name=as_text(inst.get("label")),
        intended_state=_STATES.get((intended or "").lower()),
        preempted=preempted,
        interruptible=is_bid,
        price_per_hour=as_float(inst.get("dph_total")),
        # `start_date` is when the rental started: spend "so far" from it counts the
        # whole rental, which is what Vast bills for a running instance.
        started_at=parse_time(inst.get("start_date")) if running else None,
        ssh_host=host,
        ssh_port=port,
        ssh_user="root",
        gpu_name=as_text(inst.get("gpu_name")),
        gpu_count=as_int(inst.get("num_gpus")),
    )


class VastAI(HttpProvider):
    """Vast.ai instances."""

    type = "vastai"
    default_url = DEFAULT_URL
    client_options = {"backoff": 0.5, "retries": 4}  # Vast sends no Retry-After
    capabilities = Capabilities(
        can_stop=True,
        stop_keeps="everything on the instance's disk",
        stop_loses=("nothing on disk, but the disk keeps billing, and starting again depends on "
                    "the machine's GPUs still being free"),
        teardown_destroys="the instance and all its data (irreversible)",
    )

    async def list(self) -> list[InstanceInfo]:
        found: list[InstanceInfo] = []
        token: str | None = None
        path = "/api/v1/instances/"
        for _ in range(_MAX_PAGES):
            params: dict[str, Any] = {"limit": _PAGE}
            if token:
                params["after_token"] = token
            body = strip_strings(await self.client.json("GET", path, params=params, expect=dict))
            self._check(body)
            items = body.get("instances")
            if not isinstance(items, list):
                raise self.client.unreadable("GET", path, f"{shape(body)}, no `instances` list")
            found += [instance_from_api(i) for i in items if isinstance(i, dict)]
            token = body.get("next_token")
            if not token:
                break
        return found

    async def get(self, instance_id: str) -> InstanceInfo:
        path = f"/api/v0/instances/{segment(instance_id)}/"
        body = strip_strings(await self._json("GET", path, params={"owner": "me"}, expect=dict))
        self._check(body)
        if "instances" not in body:
            raise self.client.unreadable("GET", path, f"{shape(body)}, no `instances`")
        inst = body["instances"]
        if isinstance(inst, list):  # the plural key holding a list after all
            inst = next((i for i in inst if isinstance(i, dict) and str(i.get("id")) == str(instance_id)), None)
        elif inst is not None and not isinstance(inst, dict):
            raise self.client.unreadable("GET", path, f"`instances` holding {shape(inst)}")
        if inst is None:  # the documented answer for an id the account does not have
            raise InstanceNotFound(self.type, 200, None, f"no instance {instance_id} on this account")
        return instance_from_api(inst)

    async def stop(self, instance_id: str) -> None:
        path = f"/api/v0/instances/{segment(instance_id)}/"
        self._accepted("PUT", path, await self._json("PUT", path, json={"state": "stopped"}, expect=dict))

    async def terminate(self, instance_id: str) -> None:
        # The CLI sends an empty JSON body with DELETE; so does gpuctl.
        path = f"/api/v0/instances/{segment(instance_id)}/"
        self._accepted("DELETE", path, await self._json("DELETE", path, json={}, expect=dict))

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`client.json`, with Vast's "no such instance" codes raised as `InstanceNotFound`."""
        try:
            return await self.client.json(method, path, **kwargs)
        except ProviderError as exc:
            if exc.code in _GONE_CODES and not isinstance(exc, InstanceNotFound):
                raise InstanceNotFound(exc.provider, exc.status, exc.code, exc.message) from None
            raise

    def _accepted(self, method: str, path: str, body: dict[str, Any]) -> None:
        """A mutation went through only when Vast says `"success": true`."""
        self._check(body)
        if body.get("success") is not True:
            raise self.client.unreadable(method, path, f"{shape(body)}, no `\"success\": true`")

    def _check(self, body: Any) -> None:
        """`{"success": false, ...}` with HTTP 200 is a failure too."""
        if isinstance(body, dict) and body.get("success") is False:
            error = as_text(body.get("error"))
            message = as_text(body.get("msg")) or as_text(body.get("message")) or error or "refused"
            cls = InstanceNotFound if error in _GONE_CODES else ProviderError
            raise cls(self.type, 200, error, self.client.redact(message))
