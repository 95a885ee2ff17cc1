"""A job's nodes from a hostfile (`jobs: - hostfile: PATH`), as DeepSpeed and MPI write them.

DeepSpeed's `--hostfile` (`worker-1 slots=8`), OpenMPI's (`node1 slots=8 max_slots=8`)
and MPICH's (`node1:8`) all list one host per line, rank order by line, `#` comments.
Each host becomes the pod whose `name` is that host, else the one pod whose `host` is
(an address or an `~/.ssh/config` alias), so the launcher's file and gpuctl's job
cannot disagree about which machine is rank N. The file is local (next to the config,
or where a path says), read with the config's own bounds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sessions.config.bounded_read import NotRegularFile, TooBig, read_bounded
from sessions.config.model import PodConfig

MAX_HOSTFILE_BYTES = 1 << 20


def parse_hostfile(text: str) -> list[tuple[str, int]]:
    """(host, line number) per host line, in order; comments and blank lines skipped."""
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if words:
            hosts.append((words[0].split(":", 1)[0], number))
    return hosts


def read_hostfile(path: str, config_path: Path) -> tuple[list[tuple[str, int]], str | None]:
    """The hosts of `path` (relative to the config file's folder), or ([], why not)."""
    file = Path(os.path.expanduser(path))
    if not file.is_absolute():
        file = config_path.parent / file
    try:
        data = read_bounded(file, MAX_HOSTFILE_BYTES)
    except FileNotFoundError:
        return [], f"hostfile {file} does not exist"
    except IsADirectoryError:
        return [], f"hostfile {file} is a directory"
    except NotRegularFile as exc:
        return [], f"hostfile {file} is {exc.kind}, not a regular file"
    except TooBig as exc:
        return [], f"hostfile {file} is {exc.size:,} bytes; gpuctl reads at most {MAX_HOSTFILE_BYTES:,}"
    except OSError as exc:
        return [], f"hostfile {file} cannot be read: {exc.strerror or exc}"
    hosts = parse_hostfile(data.decode("utf-8", errors="replace"))
    return (hosts, None) if hosts else ([], f"hostfile {file} lists no host")


def pods_for(hosts: list[tuple[str, int]], pods: Sequence[PodConfig], file: str) -> tuple[list[str], list[str]]:
    """(pod names in rank order, problems) for the hosts of `file`."""
    by_name = {p.name: p.name for p in pods}
    names: list[str] = []
    problems: list[str] = []
    for host, line in hosts:
        if host in by_name:
            names.append(host)
            continue
        matches = [p.name for p in pods if p.host == host]
        if len(matches) == 1:
            names.append(matches[0])
        elif matches:
            problems.append(f"{file}:{line}: host {host!r} is the host of pods {', '.join(matches)}; "
                            "name a pod after it to say which")
        else:
            problems.append(f"{file}:{line}: no pod is named {host!r} or has it as host")
    return names, problems
