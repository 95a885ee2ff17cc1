"""Crusoe Cloud: `https://api.cloud.crusoe.ai/v1/projects/{project}/compute/vms/instances`.

Auth is HMAC request signing, not a plain bearer key (PROVIDERS.md section 9, from the
official Terraform provider and dstack): each request carries
`X-Crusoe-Timestamp` and `Authorization: Bearer 1.0:<access key id>:<signature>`,
the signature being base64url (no padding) of HMAC-SHA256, keyed by the base64url-
decoded secret key, over `"{path}\\n{sorted query}\\n{METHOD}\\n{timestamp}\\n"`. The
signer is an httpx.Auth, so every retry is signed afresh. The secret key is the
`key` of the settings; the access key id comes in `options["access_key_id"]`.

Defensive parts, marked in PROVIDERS.md as [unverified]: the states other than
running/stopped/shutoff/deleting/deleted, and billing after a stop. The VM object
has no price (set `price_per_hour` in config) and no preemption signal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx

from backends.providers.base import (
    Capabilities,
    InstanceInfo,
    InstanceState,
    ProviderError,
    ProviderSettings,
    Secret,
    as_dict,
    as_text,
    parse_time,
    shape,
)
from backends.providers.http import HttpProvider, segment

DEFAULT_URL = "https://api.cloud.crusoe.ai"

_STATES = {
    "STATE_CREATING": InstanceState.STARTING,   # [unverified]
    "STATE_STARTING": InstanceState.STARTING,   # [unverified]
    "STATE_RUNNING": InstanceState.RUNNING,
    "STATE_STOPPING": InstanceState.STOPPING,   # [unverified]
    "STATE_STOPPED": InstanceState.STOPPED,
    "STATE_SHUTOFF": InstanceState.STOPPED,
    "STATE_DELETING": InstanceState.TERMINATING,
    "STATE_DELETED": InstanceState.TERMINATED,
}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signature(secret_key: str, path: str, query: str, method: str, timestamp: str) -> str:
    """Crusoe's request signature (see module docstring)."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(query, keep_blank_values=True)))
    message = f"{path}\n{canonical}\n{method.upper()}\n{timestamp}\n"
    digest = hmac.new(_b64url_decode(secret_key), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class CrusoeAuth(httpx.Auth):
    """Signs each request with the access key id and secret key."""

    def __init__(self, access_key_id: str, secret_key: Secret) -> None:
        self._key_id = access_key_id
        self._secret = secret_key

    def auth_flow(self, request: httpx.Request):
        timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        sig = signature(self._secret.reveal(), request.url.path, request.url.query.decode(),
                        request.method, timestamp)
        request.headers["X-Crusoe-Timestamp"] = timestamp
        request.headers["Authorization"] = f"Bearer 1.0:{self._key_id}:{sig}"
        yield request

    def __repr__(self) -> str:
        return "CrusoeAuth(***)"


def instance_from_api(vm: dict[str, Any]) -> InstanceInfo:
    raw = as_text(vm.get("state"))
    state = _STATES.get((raw or "").upper(), InstanceState.UNKNOWN)
    ip = None
    for nic in vm.get("network_interfaces") or ():
        for addr in (nic.get("ips") or ()) if isinstance(nic, dict) else ():
            public = addr.get("public_ipv4") if isinstance(addr, dict) else None
            if isinstance(public, dict) and as_text(public.get("address")):
                ip = ip or as_text(public["address"])
    billing = as_text(vm.get("billing_type"))
    return InstanceInfo(
        id=str(vm.get("id")),
        state=state,
        raw_status=raw,
        name=as_text(vm.get("name")),
        interruptible=None if billing is None else billing.lower() == "spot",
        # [unverified] created_at is creation, not the last start after a stop.
        started_at=parse_time(vm.get("created_at")) if state == InstanceState.RUNNING else None,
        ssh_host=ip,
        ssh_port=22 if ip else None,
        ssh_user="ubuntu",
        gpu_name=as_text(vm.get("type")),  # e.g. a100.2x; model and count are encoded in it
    )


class Crusoe(HttpProvider):
    """Crusoe Cloud VMs. Options: `project` (required), `access_key_id` (resolved by sessions)."""

    type = "crusoe"
    default_url = DEFAULT_URL
    capabilities = Capabilities(
        can_stop=True,
        stop_keeps="the VM's disks",
        stop_loses="whether a stopped VM still bills is not documented; its disks do",
        teardown_destroys=("the VM and its OS disk; data disks are not deleted with it and keep "
                           "billing until you delete them"),
    )

    def __init__(self, settings: ProviderSettings, **deps: Any) -> None:
        self.project = as_text(settings.options.get("project"))
        super().__init__(settings, **deps)

    def make_auth(self, settings: ProviderSettings) -> httpx.Auth | None:
        key_id = as_text(settings.options.get("access_key_id"))
        if settings.key and key_id:
            return CrusoeAuth(key_id, settings.key)
        return None

    def secrets(self, settings: ProviderSettings) -> tuple[Any, ...]:
        return (settings.key, as_text(settings.options.get("access_key_id")))

    def _base(self) -> str:
        if not self.project:
            raise ProviderError(self.type, None, None,
                                "set project: (the Crusoe project id) in the pod's provider entry")
        return f"/v1/projects/{segment(self.project)}/compute/vms/instances"

    async def list(self) -> list[InstanceInfo]:
        path = self._base()
        body = await self.client.json("GET", path, expect=dict)
        items = body.get("items", [])  # JSON from protobuf may leave an empty list out
        if not isinstance(items, list):
            raise self.client.unreadable("GET", path, f"{shape(body)}, no `items` list")
        return [instance_from_api(vm) for vm in items if isinstance(vm, dict)]

    async def get(self, instance_id: str) -> InstanceInfo:
        path = f"{self._base()}/{segment(instance_id)}"
        body = await self.client.json("GET", path, expect=dict)
        if not body.get("state"):
            raise self.client.unreadable("GET", path, f"{shape(body)}, not a VM (no state)")
        return instance_from_api(body)

    async def stop(self, instance_id: str) -> None:
        path = f"{self._base()}/{segment(instance_id)}"
        self._check_operation("PATCH", path, await self.client.json("PATCH", path, json={"action": "STOP"}))

    async def terminate(self, instance_id: str) -> None:
        path = f"{self._base()}/{segment(instance_id)}"
        self._check_operation("DELETE", path, await self.client.json("DELETE", path))

    def _check_operation(self, method: str, path: str, body: Any) -> None:
        """A mutation returns `{"operation": {...}}`; one already FAILED is an error,
        and an answer without one was not understood."""
        op = body.get("operation") if isinstance(body, dict) else None
        if not isinstance(op, dict):
            raise self.client.unreadable(method, path, f"{shape(body)}, no `operation`")
        if str(op.get("state", "")).upper() == "FAILED":
            result = as_dict(op.get("result"))
            raise ProviderError(self.type, 200, as_text(result.get("code")),
                                self.client.redact(as_text(result.get("message")) or "the operation failed"))
