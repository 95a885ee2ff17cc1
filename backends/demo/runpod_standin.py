"""A local stand-in for RunPod's API, so stop and teardown of a demo pod take the real path.

It speaks the request and response shapes of RunPod's REST v2 (``/v2/pods``, see
PROVIDERS.md §2.2) for the demo's pods, and the small part of the GraphQL API that
says whether a pod is a spot pod (``podType``) and whether it is running
(``desiredStatus``), since v2 has no field for that (§2.6):

* ``GET /v2/pods`` -> ``{"pods": [Pod, ...]}``; ``GET /v2/pods/{id}`` -> ``Pod`` or 404;
* ``POST /v2/pods/{id}/action`` with ``{"action": "stop"|"start"|"restart"|"terminate"}``
  -> 200 with the updated ``Pod`` (``terminate``: 204); an action the pod's status does
  not allow -> 409, any other body key -> 400 (``additionalProperties: false``);
* ``DELETE /v2/pods/{id}`` -> 204, no body;
* ``POST /graphql``: ``pod(input: {podId: "..."})``, ``myself { pods }``, and the
  ``podStop``, ``podResume``, ``podTerminate`` mutations; errors come back with HTTP 200
  and an ``errors`` list, as RunPod's do;
* every request needs ``Authorization: Bearer <the demo's key>``: 401 otherwise.
  Errors on v2 are RFC 9457 problem documents (``{"title", "status", "detail"}``).

The actions really act: each pod is a `StandInPod` whose ``stop``/``start``/
``terminate`` callbacks switch the demo pod off (its session dies, its SSH server stops
answering), on again, or off for good. A preempted spot pod reports ``EXITED``.

HTTP/1.1 with keep-alive, on 127.0.0.1, asyncio only (no thread to race the pods).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

RUNNING, EXITED, TERMINATED = "RUNNING", "EXITED", "TERMINATED"
ACTIONS = {RUNNING: ["stop", "restart", "terminate"], EXITED: ["start", "terminate"], TERMINATED: []}
_MAX_BODY = 1 << 20


def _iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else None


@dataclass
class StandInPod:
    """One demo pod as RunPod describes it, with what switching it off and on does.

    Attributes:
        id: RunPod-style pod id (14 lowercase letters and digits).
        name: the pod's name (the demo pod's name in gpuctl's config).
        gpu_id, gpu_count: ``gpu.id`` (RunPod's GPU type name) and ``gpu.count``.
        cost: USD per hour while running.
        spot: an interruptible pod (GraphQL ``podType: INTERRUPTABLE``).
        ssh_port: the demo SSH server's port (``ssh.direct``, ``runtime.ports``).
        user: the SSH user.
        on_stop, on_start, on_terminate: coroutines that act on the demo pod.
    """

    id: str
    name: str
    gpu_id: str
    gpu_count: int
    cost: float
    spot: bool
    ssh_port: int
    user: str
    on_stop: Callable[[], Awaitable[None]]
    on_start: Callable[[], Awaitable[None]]
    on_terminate: Callable[[], Awaitable[None]]
    status: str = RUNNING
    data_center: str = "EU-RO-1"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = field(default_factory=time.time)

    def v2(self) -> dict[str, Any]:
        """The REST v2 ``Pod`` object."""
        running = self.status == RUNNING
        direct = {"host": "127.0.0.1", "port": self.ssh_port, "username": self.user,
                  "command": f"ssh {self.user}@127.0.0.1 -p {self.ssh_port}"}
        return {
            "id": self.id, "name": self.name, "image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
            "status": self.status, "actions": list(ACTIONS[self.status]),
            "gpu": {"id": self.gpu_id, "count": self.gpu_count},
            "cloud": "COMMUNITY" if self.spot else "SECURE", "dataCenterId": self.data_center,
            "cost": self.cost if running else 0.0, "locked": False,
            "ssh": {"proxy": None, "direct": direct if running else None},
            "runtime": {"uptime": int(time.time() - self.started_at) if self.started_at else 0,
                        "ports": [{"private": 22, "public": self.ssh_port, "type": "tcp", "ip": "127.0.0.1"}]}
            if running else None,
            "createdAt": _iso(self.created_at), "startedAt": _iso(self.started_at) if running else None,
        }

    def graphql(self) -> dict[str, Any]:
        """The GraphQL ``Pod`` fields gpuctl may ask for (a superset of any one query)."""
        running = self.status == RUNNING
        return {
            "id": self.id, "name": self.name, "desiredStatus": self.status,
            "costPerHr": self.cost, "gpuCount": self.gpu_count,
            "podType": "INTERRUPTABLE" if self.spot else "RESERVED",
            "machine": {"gpuDisplayName": self.gpu_id, "podHostId": f"{self.id}-64410abc"},
            "runtime": {"uptimeInSeconds": int(time.time() - self.started_at) if self.started_at else 0,
                        "ports": [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                                   "publicPort": self.ssh_port, "type": "tcp"}]} if running else None,
        }


class RunPodStandIn:
    """The HTTP server. ``api_url`` is what a pod's ``provider: api_url:`` names."""

    def __init__(self, api_key: str):
        self.api_key = api_key
        self.pods: dict[str, StandInPod] = {}
        self.requests: list[tuple[str, str]] = []
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._lock = asyncio.Lock()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, pod: StandInPod) -> None:
        self.pods[pod.id] = pod

    def by_name(self, name: str) -> StandInPod:
        return next(p for p in self.pods.values() if p.name == name)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.api_url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):  # keep-alive connections would hold wait_closed (3.12+)
                writer.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            self._server = None

    # -- pod state changes, shared by REST, GraphQL and the preemption simulator -------

    async def stop(self, pod: StandInPod) -> None:
        async with self._lock:
            if pod.status == RUNNING:
                await pod.on_stop()
                pod.status, pod.started_at = EXITED, None

    async def start_pod(self, pod: StandInPod) -> None:
        async with self._lock:
            if pod.status == EXITED:
                await pod.on_start()
                pod.status, pod.started_at = RUNNING, time.time()

    async def terminate(self, pod: StandInPod) -> None:
        async with self._lock:
            if pod.status != TERMINATED:
                await pod.on_terminate()
                pod.status = TERMINATED

    # -- HTTP ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, target, headers, body = request
                self.requests.append((method, target))
                status, payload, extra = await self._dispatch(method, target, headers, body)
                keep = headers.get("connection", "").lower() != "close"
                writer.write(_response(status, payload, extra, keep))
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes):
        path = target.split("?", 1)[0].rstrip("/") or "/"
        if headers.get("authorization", "") != f"Bearer {self.api_key}":
            detail = "missing bearer token" if "authorization" not in headers else "invalid api key"
            return 401, _problem(401, "Unauthorized", detail), {}
        if path == "/graphql" and method == "POST":
            return 200, await self._graphql(body), {}
        if path == "/v2/pods" and method == "GET":
            return 200, {"pods": [p.v2() for p in self.pods.values() if p.status != TERMINATED]}, {}
        match = re.fullmatch(r"/v2/pods/([A-Za-z0-9]+)(/action)?", path)
        if not match:
            return 404, _problem(404, "Not Found", "resource not found"), {}
        pod = self.pods.get(match[1])
        if pod is None or pod.status == TERMINATED:
            return 404, _problem(404, "Not Found", "resource not found"), {}
        if match[2] and method == "POST":
            return await self._action(pod, body)
        if not match[2] and method == "GET":
            return 200, pod.v2(), {}
        if not match[2] and method == "DELETE":
            await self.terminate(pod)
            return 204, None, {}
        return 405, _problem(405, "Method Not Allowed", f"{method} is not allowed here"), {"Allow": "GET, DELETE"}

    async def _action(self, pod: StandInPod, body: bytes):
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, _problem(400, "Bad Request", "request body is not JSON"), {}
        if not isinstance(request, dict) or set(request) != {"action"}:
            return 400, _problem(400, "Bad Request", "body must be {\"action\": ...} and nothing else",
                                 errors=["additionalProperties: false"]), {}
        action = request["action"]
        if action not in ("stop", "start", "restart", "terminate"):
            return 400, _problem(400, "Bad Request", f"unknown action {action!r}"), {}
        if action not in ACTIONS[pod.status]:
            return 409, _problem(409, "Conflict", f"action {action!r} is not allowed while the pod is {pod.status}"), {}
        if action == "stop":
            await self.stop(pod)
        elif action == "start":
            await self.start_pod(pod)
        elif action == "restart":
            await self.stop(pod)
            await self.start_pod(pod)
        else:
            await self.terminate(pod)
            return 204, None, {}
        return 200, pod.v2(), {}

    async def _graphql(self, body: bytes) -> dict[str, Any]:
        try:
            query = str(json.loads(body).get("query", ""))
        except (ValueError, AttributeError):
            return {"errors": [{"message": "body must be JSON with a query"}], "data": None}
        found = re.search(r'podId\s*:\s*"([^"]*)"', query)
        pod = self.pods.get(found[1]) if found else None
        if pod is not None and pod.status == TERMINATED:
            pod = None
        for mutation, act in (("podStop", self.stop), ("podResume", self.start_pod),
                              ("podTerminate", self.terminate)):
            if re.search(rf"\b{mutation}\s*\(", query):
                if pod is None:
                    return {"errors": [{"message": "pod not found"}], "data": None}
                await act(pod)
                value: Any = None if mutation == "podTerminate" else {"id": pod.id, "desiredStatus": pod.status}
                return {"data": {mutation: value}}
        if re.search(r"\bpod\s*\(", query):
            if pod is None:
                return {"errors": [{"message": "pod not found"}], "data": {"pod": None}}
            return {"data": {"pod": pod.graphql()}}
        if "myself" in query:
            return {"data": {"myself": {"pods": [p.graphql() for p in self.pods.values() if p.status != TERMINATED]}}}
        return {"errors": [{"message": "the gpuctl demo's stand-in answers pod queries only"}], "data": None}


def _problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        problem["errors"] = errors
    return problem


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict"}


def _response(status: int, payload: Any, extra: dict[str, str], keep_alive: bool) -> bytes:
    body = b"" if payload is None else json.dumps(payload).encode()
    kind = "application/problem+json" if status >= 400 and isinstance(payload, dict) and "title" in payload \
        else "application/json"
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Content-Length: {len(body)}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    if body:
        lines.append(f"Content-Type: {kind}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_request(reader: asyncio.StreamReader):
    """One request: (method, target, lower-cased headers, body), or None at EOF."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    if length > _MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    return method.upper(), target, headers, body
