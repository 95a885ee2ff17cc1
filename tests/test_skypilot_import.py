"""`gpuctl pods import skypilot` from SkyPilot's generated SSH entries (issue 18, part 3).

The files are written in SkyPilot's own shape (`SSHConfigHelper._get_generated_config`:
head `Host <cluster>`, workers `Host <cluster>-workerN`, "no checking" options, a
ProxyCommand) and point at real sshd servers; the imported pods then answer
`gpuctl status` through the proxy, with host keys recorded by gpuctl's accept-new.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from sessions.config.loader import load_config, locate_config
from sessions.providers import skypilot_import
from tui.cli import main

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]


def _node(alias: str, pod, jump=None) -> str:
    proxy = ""
    if jump is not None:
        proxy = "  ProxyCommand " + shlex.join(["ssh", *jump.ssh_options(), "-W", "%h:%p", jump.destination]) + "\n"
    return (f"# Added by sky (use `sky stop/down {alias.split('-worker')[0]}` to remove)\n"
            f"Host {alias}\n  HostName {pod.host}\n  User {pod.user}\n  IdentityFile {pod.client_key}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile=/dev/null\n"
            f"  GlobalKnownHostsFile=/dev/null\n  Port {pod.port}\n{proxy}\n")


def _sky_home(home: Path, files: dict[str, str]) -> None:
    gen = home / ".sky" / "generated" / "ssh"
    gen.mkdir(parents=True)
    for name, text in files.items():
        (gen / name).write_text(text)
    (home / ".ssh" / "config").write_text(
        "# Added by SkyPilot for ssh config of all clusters\nInclude ~/.sky/generated/ssh/*\n\n")


def test_reads_head_then_workers_and_ignores_other_hosts(tmp_path):
    f = tmp_path / "train"
    f.write_text("Host train-worker2\n  HostName 10.0.0.3\nHost train\n  HostName 10.0.0.1\n"
                 "Host train-worker1\n  HostName 10.0.0.2\nHost *\n  User x\nHost other-worker1\n")
    nodes = skypilot_import.read_cluster(f)
    assert [(n.alias, n.rank, n.hostname) for n in nodes] == [
        ("train", 0, "10.0.0.1"), ("train-worker1", 1, "10.0.0.2"), ("train-worker2", 2, "10.0.0.3")]


def test_a_file_over_the_limit_or_not_a_file_gives_no_nodes(tmp_path):
    """Read as the config is (`bounded_read`): a named pipe answers at once instead of
    waiting for a writer, and a file past `MAX_FILE_BYTES` is not read."""
    import os

    big = tmp_path / "big"
    big.write_text("Host big\n  HostName 10.0.0.1\n" + "#" * skypilot_import.MAX_FILE_BYTES)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert skypilot_import.read_cluster(big) == [] and skypilot_import.read_cluster(pipe) == []
    assert [n.alias for n in skypilot_import.read_cluster(tmp_path / "missing")] == []


def test_import_writes_one_pod_per_node_that_status_reaches(isolated_home, sshd, sshd_nopython, tmp_path, capsys):
    # A two-node cluster behind a jump host (head and worker: the same sshd here) and
    # a one-node cluster reached directly.
    _sky_home(isolated_home, {
        "train": _node("train", sshd, jump=sshd_nopython) + _node("train-worker1", sshd, jump=sshd_nopython),
        "solo": _node("solo", sshd_nopython),
    })
    config = tmp_path / "config.yaml"
    config.write_text("# mine\npods:\n  - name: keep\n    host: 192.0.2.1\n")
    assert main(["--config", str(config), "pods", "import", "skypilot"]) == 0
    assert config.read_text() == "# mine\npods:\n  - name: keep\n    host: 192.0.2.1\n", "printing changes nothing"
    assert main(["--config", str(config), "pods", "import", "skypilot", "--write"]) == 0
    text = config.read_text()
    assert text.startswith("# mine\n") and "stop and teardown act on the whole cluster" in text
    loaded = load_config(locate_config(str(config)))
    pods = {p.name: p for p in loaded.pods}
    assert set(pods) == {"keep", "solo", "train", "train-worker1"}
    # The two-node cluster is one job, head first; the one-node cluster is not a job.
    assert [(j.name, j.pods, j.session) for j in loaded.jobs] == [("train", ("train", "train-worker1"), None)]
    assert (pods["train-worker1"].host, pods["train-worker1"].host_key) == ("train-worker1", "accept-new")
    assert (pods["train-worker1"].provider.type, pods["train-worker1"].provider.id) == ("skypilot", "train")
    capsys.readouterr()
    # Again: nothing new.
    assert main(["--config", str(config), "pods", "import", "skypilot", "--write"]) == 0
    assert "nothing to import" in capsys.readouterr().out and config.read_text() == text

    # The imported pods answer, through the ProxyCommand, with their keys recorded; the
    # cluster is listed as one job of two nodes.
    config.write_text(text.replace("  - name: keep\n    host: 192.0.2.1\n", ""))
    jump_before = sshd_nopython.log_text().count("Accepted publickey")
    main(["--config", str(config), "status", "--json"])
    doc = json.loads(capsys.readouterr().out)
    states = {p["name"]: p["state"] for p in doc["pods"]}
    assert states == {"solo": "online", "train": "online", "train-worker1": "online"}, doc
    (job,) = doc["jobs"]
    assert (job["name"], job["nodes"], job["nodes_online"]) == ("train", 2, 2)
    # solo connects to the jump sshd directly; train and its worker through it.
    assert sshd_nopython.log_text().count("Accepted publickey") - jump_before == 3


def test_no_clusters_says_where_it_looked(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    assert main(["--config", str(config), "pods", "import", "skypilot"]) == 0
    assert ".sky/generated/ssh" in capsys.readouterr().err and not config.exists()
