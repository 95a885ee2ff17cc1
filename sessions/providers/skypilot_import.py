"""`gpuctl pods import skypilot`: SkyPilot's generated SSH entries as pod entries.

SkyPilot writes one file per cluster, `~/.sky/generated/ssh/<cluster>`, and puts
`Include ~/.sky/generated/ssh/*` at the top of `~/.ssh/config`. Each file holds a
`Host <cluster>` entry for the head node and `Host <cluster>-worker<N>` for the
workers, with the node's address, user, key, port and, on Kubernetes or behind a
jump host, a `ProxyCommand` (`sky/backends/backend_utils.py`, `SSHConfigHelper`).
The file exists while the cluster is up; `sky stop`/`sky down` remove it.

So no `sky` call is needed: each node becomes a pod whose `host:` is its alias, and
`backends.ssh` resolves the rest from the SSH config at every connect (SkyPilot may
rewrite the address; the alias stays). Entries name provider `skypilot` with the
cluster as id, so `gpuctl stop`/`teardown` run `sky stop`/`sky down` on the cluster.
Host keys follow gpuctl's policy: the entries say `host_key: accept-new` (record on
first connect, refuse a changed key), never SkyPilot's "no checking". A cluster of
several nodes also becomes a `jobs:` entry (its nodes in rank order, head first), so
it is shown as one unit; it names no session until the user adds one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backends.providers.base import InstanceInfo, InstanceState
from sessions.config.bounded_read import read_bounded
from sessions.config.model import Config
from sessions.providers.pod_import import ImportPlan, NewPod, pod_name, scalar

_WORKER = re.compile(r"-worker(\d+)$")
MAX_FILE_BYTES = 1 << 20


def generated_dir() -> Path:
    """Where SkyPilot keeps one SSH config file per cluster."""
    return Path.home() / ".sky" / "generated" / "ssh"


@dataclass(frozen=True)
class SkyNode:
    """One `Host` entry of a cluster's file: its alias and where it points."""

    cluster: str
    alias: str
    rank: int
    """0 for the head, N for `<cluster>-workerN`."""
    hostname: str | None = None


def read_cluster(path: Path) -> list[SkyNode]:
    """The nodes in one generated file, head first then workers by number.

    Only `Host` lines with a single plain name count (SkyPilot writes no patterns);
    a file that cannot be read or has none gives an empty list.
    """
    try:  # not a stat then a read: a FIFO there would hang the import (bounded_read)
        text = read_bounded(path, MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:  # unreadable, over the limit or not a regular file
        return []
    cluster = path.name
    nodes: list[SkyNode] = []
    alias: str | None = None
    hostname: str | None = None

    def close() -> None:
        if alias is None:
            return
        if alias == cluster:
            nodes.append(SkyNode(cluster, alias, 0, hostname))
        elif alias.startswith(cluster) and (m := _WORKER.search(alias)) and alias[: m.start()] == cluster:
            nodes.append(SkyNode(cluster, alias, int(m.group(1)), hostname))

    for line in text.splitlines():
        words = line.strip().replace("=", " ", 1).split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        if key == "host":
            close()
            alias = words[1] if len(words) == 2 and not any(c in words[1] for c in "*?!") else None
            hostname = None
        elif key == "hostname" and len(words) > 1:
            hostname = words[1]
    close()
    return sorted(nodes, key=lambda n: n.rank)


def read_clusters(directory: Path | None = None) -> list[list[SkyNode]]:
    """Every cluster with at least one node, by cluster name."""
    root = generated_dir() if directory is None else directory
    if not root.is_dir():
        return []
    found = [read_cluster(p) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return [nodes for nodes in found if nodes]


def entry_text(name: str, node: SkyNode, size: int, indent: int) -> str:
    """One pod entry for a node, its dash at column `indent`."""
    pad = " " * indent
    lines = []
    if size > 1:
        role = "head" if node.rank == 0 else f"worker {node.rank}"
        lines.append(f"{pad}# SkyPilot cluster {node.cluster}, {role} of {size} nodes: "
                     "stop and teardown act on the whole cluster")
    lines += [
        f"{pad}- name: {scalar(name)}",
        # The alias: ~/.ssh/config (SkyPilot's Include) says address, user, key, proxy.
        f"{pad}  host: {scalar(node.alias)}",
        f"{pad}  host_key: accept-new",
        f"{pad}  provider: {{type: skypilot, id: {scalar(node.cluster)}}}",
    ]
    return "\n".join(lines) + "\n"


def plan(config: Config | None, clusters: list[list[SkyNode]], *, indent: int = 2) -> ImportPlan:
    """Which nodes become pod entries; a node whose alias is already a pod's host is skipped."""
    result = ImportPlan()
    pods = config.pods if config else ()
    hosts = {p.host: p.name for p in pods}
    taken = {p.name for p in pods}
    for nodes in clusters:
        for node in nodes:
            info = InstanceInfo(id=node.cluster, state=InstanceState.RUNNING, name=node.alias,
                                ssh_host=node.alias)
            if node.alias in hosts:
                result.skipped.append((info, f"already in the config as pod {hosts[node.alias]!r}"))
                continue
            name = pod_name(info, "skypilot", taken)
            taken.add(name)
            result.added.append(NewPod(name, info, entry_text(name, node, len(nodes), indent)))
    return result


def job_entries(config: Config | None, clusters: list[list[SkyNode]], plan: ImportPlan, *,
                indent: int = 2) -> str:
    """`jobs:` entries (YAML text) for each multi-node cluster whose nodes are all pods
    after this import and that no job names yet."""
    pods = config.pods if config else ()
    pod_for = {p.host: p.name for p in pods}
    pod_for.update({new.info.ssh_host: new.name for new in plan.added if new.info.ssh_host})
    taken = {j.name for j in (config.jobs if config else ())}
    grouped = {tuple(j.pods) for j in (config.jobs if config else ())}
    pad = " " * indent
    text = ""
    for nodes in clusters:
        names = [pod_for.get(n.alias) for n in nodes]
        if len(nodes) < 2 or None in names or tuple(names) in grouped:
            continue
        name, n = nodes[0].cluster, 2
        while name in taken:
            name, n = f"{nodes[0].cluster}-{n}", n + 1
        taken.add(name)
        text += (f"{pad}# SkyPilot cluster {nodes[0].cluster}: add session: (run on every node) to launch it as one job\n"
                 f"{pad}- name: {scalar(name)}\n"
                 f"{pad}  pods: [{', '.join(scalar(x) for x in names)}]\n")
    return text
