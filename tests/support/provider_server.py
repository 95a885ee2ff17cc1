"""A local HTTP server that speaks the provider APIs' real shapes and records requests.

One `ProviderServer` per test, on a random loopback port, in a thread (no aiohttp
needed). It answers from, in order:

1. replies queued with `push(method, path, Reply(...))` (429s, errors, one-offs);
2. the stateful fake given to it (`FakeRunPod`, `FakeVast`, `FakeLambda`,
   `FakeThunder`, `FakeTensorDock`, `FakeCrusoe`), which keeps instances and moves
   them between states the way the real API does (a stop is seen on a later GET);
3. a 404 in the fake's error shape.

Every request is recorded (`server.requests`) with method, path, query, headers and
body, so a test asserts exactly what gpuctl sent. Shapes follow /work/shared/PROVIDERS.md.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

KEY = "sk-test-3c9f1d2e-SECRET-7a6b5c4d"
"""The API key every fake expects; tests assert it never appears in any output."""


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """What to answer: a dict/list is sent as JSON, a str as text/plain."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", self.content_type or "application/json"
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        return str(self.body).encode(), self.content_type or "text/plain; charset=utf-8"


Handler = Callable[[Recorded], Reply]


class ProviderServer:
    """The recording server. Use as a context manager; `url` is its root."""

    def __init__(self, fake: Handler | None = None) -> None:
        self.fake = fake
        self.requests: list[Recorded] = []
        self._queued: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                rec = Recorded(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                               {k.lower(): v for k, v in self.headers.items()}, body)
                reply = server._answer(rec)
                data, ctype = reply.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "ProviderServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def push(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to (method, path) with these replies, in order."""
        with self._lock:
            self._queued[(method, path)].extend(replies)

    def _answer(self, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            queue = self._queued.get((rec.method, rec.path))
            if queue:
                return queue.popleft()
        if self.fake is not None:
            return self.fake(rec)
        return Reply(404, {"error": "no route"})

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """Recorded requests, optionally only those with this method and/or path."""
        return [r for r in self.requests if (method in (None, r.method)) and (path in (None, r.path))]


# --- stateful fakes -------------------------------------------------------------------


class Fake:
    """Instances by id; `settle` GETs pass before a requested change shows.

    Attributes:
        instances: id -> the provider's own instance object (mutated in place).
        pending: id -> (GETs left, field changes to apply then).
    """

    def __init__(self, instances: dict[str, dict[str, Any]] | None = None, *, key: str = KEY, settle: int = 1):
        self.instances = instances or {}
        self.key = key
        self.settle = settle
        self.pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self.deleted: set[str] = set()

    def authorised(self, rec: Recorded) -> bool:
        return rec.headers.get("authorization") == f"Bearer {self.key}"

    def later(self, ident: str, now: dict[str, Any], then: dict[str, Any]) -> None:
        """Apply `now` at once, and `then` after `settle` more reads of the instance."""
        self.instances[ident].update(now)
        self.pending[ident] = (self.settle, then)

    def seen(self, ident: str) -> None:
        """A GET of the instance: count down its pending change."""
        if ident in self.pending:
            left, then = self.pending[ident]
            if left <= 0:
                self.instances[ident].update(then)
                del self.pending[ident]
                if then.get("_deleted"):
                    self.instances.pop(ident, None)
                    self.deleted.add(ident)
            else:
                self.pending[ident] = (left - 1, then)


class FakeRunPod(Fake):
    """RunPod REST v2 (`/v2/pods...`, RFC 9457 errors) and GraphQL (`/graphql`)."""

    def __init__(self, *args: Any, pod_types: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pod_types = pod_types or {}

    @staticmethod
    def problem(status: int, title: str, detail: str) -> Reply:
        return Reply(status, {"title": title, "status": status, "detail": detail},
                     content_type="application/problem+json")

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return self.problem(401, "Unauthorized", "missing bearer token")
        parts = rec.path.strip("/").split("/")
        if rec.path == "/graphql" and rec.method == "POST":
            return self.graphql(rec)
        if parts[:2] != ["v2", "pods"]:
            return self.problem(404, "Not Found", "resource not found")
        if len(parts) == 2 and rec.method == "GET":
            return Reply(200, {"pods": list(self.instances.values())})
        ident = parts[2] if len(parts) > 2 else ""
        if ident not in self.instances:
            return self.problem(404, "Not Found", "resource not found")
        if len(parts) == 3 and rec.method == "GET":
            self.seen(ident)
            if ident not in self.instances:
                return self.problem(404, "Not Found", "resource not found")
            return Reply(200, self.instances[ident])
        if len(parts) == 4 and parts[3] == "action" and rec.method == "POST":
            action = (rec.json or {}).get("action")
            pod = self.instances[ident]
            if action == "stop" and pod["status"] in ("RUNNING", "PROVISIONING", "STARTING"):
                self.later(ident, {}, {"status": "EXITED", "cost": 0.0, "runtime": None,
                                       "ssh": {"proxy": pod.get("ssh", {}).get("proxy"), "direct": None}})
                return Reply(200, pod)
            return self.problem(409, "Conflict", f"action {action!r} is not allowed in status {pod['status']}")
        if len(parts) == 3 and rec.method == "DELETE":
            self.later(ident, {}, {"status": "TERMINATED", "_deleted": True})
            return Reply(204)
        return self.problem(405, "Method Not Allowed", "method not allowed")

    def graphql(self, rec: Recorded) -> Reply:
        query = (rec.json or {}).get("query", "")
        if "myself" in query:
            pods = [{"id": i, "podType": self.pod_types.get(i, "RESERVED"), "desiredStatus": p.get("status")}
                    for i, p in self.instances.items()]
            return Reply(200, {"data": {"myself": {"pods": pods}}})
        for ident, pod in self.instances.items():
            if f'"{ident}"' in query:
                return Reply(200, {"data": {"pod": {"id": ident, "podType": self.pod_types.get(ident, "RESERVED"),
                                                    "desiredStatus": pod.get("status")}}})
        return Reply(200, {"errors": [{"message": "pod not found", "path": ["pod"]}], "data": {"pod": None}})


def runpod_pod(ident: str, status: str = "RUNNING", *, direct: bool = True, cost: float = 3.28,
               name: str = "train-01") -> dict[str, Any]:
    """A v2 `Pod` object like the OpenAPI example."""
    token = f"{ident}-64410abc"
    return {
        "id": ident, "name": name, "image": "runpod/pytorch:2.4", "status": status,
        "actions": ["stop", "restart", "terminate"], "gpu": {"id": "NVIDIA A100 80GB PCIe", "count": 2},
        "cloud": "SECURE", "dataCenterId": "EU-RO-1", "cost": cost, "locked": False,
        "ssh": {
            "proxy": {"host": "ssh.runpod.io", "port": 22, "username": token,
                      "command": f"ssh {token}@ssh.runpod.io"},
            "direct": {"host": "203.0.113.9", "port": 40122, "username": "root",
                       "command": "ssh root@203.0.113.9 -p 40122"} if direct else None,
        },
        "runtime": {"uptime": 420, "ports": [{"private": 22, "public": 40122, "type": "tcp", "ip": "203.0.113.9"}]}
        if direct else {"uptime": 420, "ports": []},
        "createdAt": "2026-05-01T10:00:00Z", "startedAt": "2026-05-01T10:01:30Z",
    }


class FakeVast(Fake):
    """Vast.ai `/api/v0/instances/{id}/` and `/api/v1/instances/` with its quirks."""

    page_size = 25

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return Reply(401, {"success": False, "error": "auth_error", "msg": "Invalid user key"})
        if rec.path == "/api/v1/instances/" and rec.method == "GET":
            ids = sorted(self.instances, key=int)
            after = rec.query.get("after_token", [None])[0]
            start = ids.index(after) + 1 if after in ids else 0
            limit = int(rec.query.get("limit", ["25"])[0])
            page = ids[start:start + limit]
            more = start + limit < len(ids)
            return Reply(200, {"success": True, "instances": [self.instances[i] for i in page],
                               "instances_found": len(page), "total_instances": len(ids),
                               "label_counts": {}, "next_token": page[-1] if more and page else None})
        parts = rec.path.strip("/").split("/")
        if parts[:3] != ["api", "v0", "instances"] or len(parts) != 4 or not rec.path.endswith("/"):
            return Reply(404, {"success": False, "error": "not_found", "msg": "no such route"})
        ident = parts[3]
        if rec.method == "GET":
            self.seen(ident)
            return Reply(200, {"instances": self.instances.get(ident)})  # singular object, may be null
        if ident not in self.instances:
            return Reply(404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"})
        if rec.method == "PUT":
            wanted = (rec.json or {}).get("state")
            self.later(ident, {"intended_status": wanted}, {"actual_status": wanted, "cur_state": wanted,
                                                            "ports": None})
            return Reply(200, {"success": True})
        if rec.method == "DELETE":
            self.later(ident, {}, {"_deleted": True})
            return Reply(200, {"success": True, "msg": "destroying instance"})
        return Reply(405, {"success": False, "error": "invalid_request", "msg": "method"})


def vast_instance(ident: int, status: str = "running", *, is_bid: bool = False, intended: str = "running") -> dict[str, Any]:
    """A Vast instance object like the docs' example, whitespace padding included."""
    return {
        "id": ident, "label": "train-01 ", "actual_status": status, "intended_status": intended,
        "cur_state": status, "next_state": status, "status_msg": "success, running pytorch/pytorch\n",
        "gpu_name": "RTX 4090", "num_gpus": 2, "dph_total": 0.8412, "is_bid": is_bid,
        "ssh_host": "ssh7.vast.ai ", "ssh_port": 31234, "public_ipaddr": "198.51.100.20\n",
        "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40022"}]}, "image_runtype": "ssh_direc ssh_proxy",
        "start_date": 1767225600.5, "extra_env": [["FOO", "bar"]],
    }


class FakeLambda(Fake):
    """Lambda Cloud `/api/v1/instances` and `/api/v1/instance-operations/terminate`."""

    @staticmethod
    def error(status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error": {"code": code, "message": message}})

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return self.error(401, "global/invalid-api-key", "API key was invalid, expired, or deleted.")
        if rec.path == "/api/v1/instances" and rec.method == "GET":
            return Reply(200, {"data": [i for i in self.instances.values() if i["status"] != "terminated"]})
        if rec.path.startswith("/api/v1/instances/") and rec.method == "GET":
            ident = rec.path.rsplit("/", 1)[1]
            self.seen(ident)
            if ident not in self.instances:
                return self.error(404, "global/object-does-not-exist", "Specified instance does not exist.")
            return Reply(200, {"data": self.instances[ident]})
        if rec.path == "/api/v1/instance-operations/terminate" and rec.method == "POST":
            ids = (rec.json or {}).get("instance_ids") or []
            missing = [i for i in ids if i not in self.instances]
            if missing:
                return self.error(404, "global/object-does-not-exist", "Specified instance does not exist.")
            for i in ids:
                self.later(i, {"status": "terminating"}, {"status": "terminated"})
            return Reply(200, {"data": {"terminated_instances": [self.instances[i] for i in ids]}})
        return self.error(404, "global/not-found", "no such route")


def lambda_instance(ident: str, status: str = "active") -> dict[str, Any]:
    return {
        "id": ident, "name": "train-01", "ip": "198.51.100.2", "private_ip": "10.0.2.100", "status": status,
        "hostname": "198.51.100.2", "region": {"name": "us-east-1", "description": "Virginia, USA"},
        "instance_type": {"name": "gpu_1x_h100_pcie", "description": "1x H100 (80 GB PCIe)",
                          "gpu_description": "H100 (80 GB PCIe)", "price_cents_per_hour": 249,
                          "specs": {"vcpus": 26, "memory_gib": 200, "storage_gib": 1024, "gpus": 1}},
        "ssh_key_names": ["laptop"], "file_system_names": [],
        "actions": {"terminate": {"available": True}},
    }


class FakeThunder(Fake):
    """Thunder Compute `/v1/instances/list` (an object keyed by id) and delete."""

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return Reply(401, {"code": 401, "error": "unauthorized", "message": "invalid token"})
        if rec.path == "/v1/instances/list" and rec.method == "GET":
            for ident in list(self.instances):
                self.seen(ident)
            return Reply(200, dict(self.instances))
        parts = rec.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "instances"] and parts[3] == "delete" and rec.method == "POST":
            if parts[2] not in self.instances:
                return Reply(404, {"code": 404, "error": "not_found", "message": "instance not found"})
            self.later(parts[2], {"status": "STOPPING"}, {"_deleted": True})
            return Reply(200, {"message": "instance deleted"})
        return Reply(404, {"code": 404, "error": "not_found", "message": "no such route"})


def thunder_instance(uuid: str = "8f1c2d3e-0000-4000-8000-1234567890ab", status: str = "RUNNING") -> dict[str, Any]:
    return {"uuid": uuid, "name": "proto-1", "status": status, "ip": "203.0.113.40", "port": 30022,
            "gpuType": "a100xl", "numGpus": "1", "cpuCores": "8", "memory": "64", "storage": 100,
            "mode": "prototyping", "template": "base", "createdAt": "2026-03-01T12:00:00Z"}


class FakeTensorDock(Fake):
    """TensorDock v2; `wrap` picks the body shape: "data", "attributes" or "flat"."""

    def __init__(self, *args: Any, wrap: str = "data", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.wrap = wrap

    def _one(self, ident: str) -> Any:
        inst = self.instances[ident]
        if self.wrap == "flat":
            return inst
        if self.wrap == "attributes":
            return {"data": {"type": "instance", "id": ident, "attributes": {k: v for k, v in inst.items() if k != "id"}}}
        return {"data": inst}

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return Reply(401, {"error": "Unauthorized", "status": 401})
        parts = rec.path.strip("/").split("/")
        if parts[:3] != ["api", "v2", "instances"]:
            return Reply(404, {"error": "Not found", "status": 404})
        if len(parts) == 3 and rec.method == "GET":
            items = [{"type": "instance", "id": i, "attributes": v} for i, v in self.instances.items()]
            return Reply(200, {"data": {"type": "list", "id": "instances", "attributes": {"instances": items}}})
        ident = parts[3] if len(parts) > 3 else ""
        if ident not in self.instances:
            return Reply(404, {"error": "Instance not found", "status": 404})
        if len(parts) == 4 and rec.method == "GET":
            self.seen(ident)
            if ident not in self.instances:
                return Reply(404, {"error": "Instance not found", "status": 404})
            return Reply(200, self._one(ident))
        if len(parts) == 5 and parts[4] == "stop" and rec.method == "POST":
            self.later(ident, {"status": "stopping"}, {"status": "stopped"})
            return Reply(200, {"status": "success"})
        if len(parts) == 4 and rec.method == "DELETE":
            self.later(ident, {}, {"_deleted": True})
            return Reply(200, {"status": "success"})
        return Reply(405, {"error": "Method not allowed", "status": 405})


def tensordock_instance(ident: str = "td-1", status: str = "running") -> dict[str, Any]:
    return {"id": ident, "name": "td-train", "status": status, "ipAddress": "198.51.100.77", "rateHourly": 0.55,
            "portForwards": [{"internal_port": 22, "external_port": 22022}],
            "resources": {"vcpu_count": 8, "ram_gb": 32, "storage_gb": 200,
                          "gpus": {"geforcertx4090-pcie-24gb": {"count": 1, "v0Name": "geforcertx4090-pcie-24gb"}}}}


class FakeCrusoe(Fake):
    """Crusoe `/v1/projects/{p}/compute/vms/instances`; checks the `Bearer 1.0:` prefix."""

    def __init__(self, *args: Any, project: str = "proj-1", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project = project

    def authorised(self, rec: Recorded) -> bool:
        return rec.headers.get("authorization", "").startswith("Bearer 1.0:") and "x-crusoe-timestamp" in rec.headers

    def __call__(self, rec: Recorded) -> Reply:
        if not self.authorised(rec):
            return Reply(401, {"code": "unauthorized", "error_id": "e1", "message": "bad signature", "reason": "auth"})
        base = f"/v1/projects/{self.project}/compute/vms/instances"
        if rec.path == base and rec.method == "GET":
            return Reply(200, {"items": list(self.instances.values()), "next_page_token": "", "prev_page_token": ""})
        if not rec.path.startswith(base + "/"):
            return Reply(404, {"code": "not_found", "message": "no such route"})
        ident = rec.path[len(base) + 1:]
        if ident not in self.instances:
            return Reply(404, {"code": "not_found", "error_id": "e2", "message": "vm not found"})
        op = {"operation": {"operation_id": "op-1", "state": "IN_PROGRESS"}}
        if rec.method == "GET":
            self.seen(ident)
            if ident not in self.instances:
                return Reply(404, {"code": "not_found", "error_id": "e2", "message": "vm not found"})
            return Reply(200, self.instances[ident])
        if rec.method == "PATCH" and (rec.json or {}).get("action") == "STOP":
            self.later(ident, {}, {"state": "STATE_STOPPED"})
            return Reply(200, op)
        if rec.method == "DELETE":
            self.later(ident, {"state": "STATE_DELETING"}, {"_deleted": True})
            return Reply(200, op)
        return Reply(400, {"code": "bad_request", "message": "unsupported"})


def crusoe_vm(ident: str = "vm-1", state: str = "STATE_RUNNING") -> dict[str, Any]:
    return {"id": ident, "name": "crusoe-train", "state": state, "type": "a100.2x", "location": "us-east1-a",
            "project_id": "proj-1", "created_at": "2026-04-01T00:00:00Z", "billing_type": "On-demand",
            "network_interfaces": [{"id": "n1", "ips": [{"private_ipv4": {"address": "10.0.0.2"},
                                                          "public_ipv4": {"address": "203.0.113.55", "id": "ip1",
                                                                          "type": "dynamic"}}]}]}
