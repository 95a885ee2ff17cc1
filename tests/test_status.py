"""`gpuctl status` and the Fleet against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.config.paths import gpuctl_known_hosts_path
from tests.support.sshd import SshdServer
from tui.cli import main
from tests.support.pinning import trust

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]


def write_config(tmp_path: Path, pods: list[dict], **top) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**top, "pods": pods}, sort_keys=False))
    return path


def status_json(config: Path, capsys, *extra: str) -> tuple[int, dict]:
    code = main(["--config", str(config), "status", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def pod(doc: dict, name: str) -> dict:
    return next(p for p in doc["pods"] if p["name"] == name)


async def wait_for(fleet: Fleet, name: str, predicate, timeout: float = 30.0):
    """The first snapshot of `name` that satisfies `predicate`."""
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for snap in sub:
                if predicate(snap.pod(name)):
                    return snap.pod(name)
    finally:
        sub.close()


def test_status_of_one_pod_reports_gpus_disk_load_uptime(sshd, tmp_path, capsys):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("a100", price_per_hour=1.29, workdir=str(tmp_path))])
    code, doc = status_json(config, capsys)
    assert code == 0
    p = pod(doc, "a100")
    assert (p["state"], p["error"], p["transport"], p["gpu_status"]) == ("online", None, "agent", "ok")
    expected = sshd.gpu_state()["gpus"]
    assert [g["name"] for g in p["gpus"]] == [g["name"] for g in expected]
    assert p["gpus"][0]["temp_c"] == expected[0]["temperature.gpu"]
    assert p["gpus"][0]["mem_total_mib"] == expected[0]["memory.total"]
    assert set(p["gpus"][0]) >= {"index", "name", "temp_c", "util_pct", "mem_used_mib", "mem_total_mib", "power_w", "power_limit_w"}
    assert p["disk"]["path"] == str(tmp_path) and 0 < p["disk"]["used_bytes"] <= p["disk"]["total_bytes"]
    assert len(p["load"]) == 3 and p["uptime_s"] > 0
    assert p["price_per_hour"] == 1.29 and p["host"] == f"{sshd.user}@127.0.0.1:{sshd.port}"


def test_status_of_several_pods_names_why_each_failed(sshd, silent_server, refused_port, tmp_path, capsys):
    trust(sshd)
    config = write_config(tmp_path, [
        sshd.pod_entry("good"),
        {"name": "refused", "host": "127.0.0.1", "port": refused_port},
        {"name": "silent", "host": "127.0.0.1", "port": silent_server.port, "connect_timeout": 2},
        {"name": "nodns", "host": "no-such-pod.invalid"},
        sshd.pod_entry("badkey", identity=str(tmp_path / "nokey")),
    ])
    # A valid key the server has never seen: authentication must fail, not the key load.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "nokey")], check=True)
    code, doc = status_json(config, capsys)
    assert code == 1
    assert pod(doc, "good")["state"] == "online"
    kinds = {p["name"]: (p["state"], p["error_kind"]) for p in doc["pods"] if p["name"] != "good"}
    assert kinds == {
        "refused": ("offline", "refused"),
        "silent": ("offline", "timeout"),
        "nodns": ("offline", "dns"),
        "badkey": ("offline", "auth"),
    }
    assert "connection refused" in pod(doc, "refused")["error"]
    assert "timed out after 2s" in pod(doc, "silent")["error"]
    assert "authentication failed" in pod(doc, "badkey")["error"]


async def test_an_unreachable_pod_does_not_delay_the_others(sshd, silent_server, tmp_path):
    """The good pod is online while the silent one is still inside its connect timeout."""
    trust(sshd)
    config = parse_config(yaml.safe_dump({"pods": [
        {"name": "silent", "host": "127.0.0.1", "port": silent_server.port, "connect_timeout": 5},
        sshd.pod_entry("good"),
    ]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        await wait_for(fleet, "good", lambda p: p.state == "online")
        assert fleet.snapshot().pod("silent").state == "connecting"
        silent = await wait_for(fleet, "silent", lambda p: p.state == "offline")
        assert silent.error_kind == "timeout"


def test_a_missing_identity_file_is_named(sshd, tmp_path, capsys):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("p", identity=str(tmp_path / "gone_ed25519"))])
    code, doc = status_json(config, capsys)
    assert (code, pod(doc, "p")["error_kind"]) == (1, "auth")
    assert f"identity file {tmp_path / 'gone_ed25519'} does not exist" in pod(doc, "p")["error"]


def test_unknown_host_key_is_refused_under_strict(sshd, tmp_path, capsys):
    config = write_config(tmp_path, [sshd.pod_entry("p", host_key="strict")])
    code, doc = status_json(config, capsys)
    assert code == 1
    p = pod(doc, "p")
    assert p["error_kind"] == "host-key-unknown"
    assert "accept-new" in p["error"] and "SHA256:" in p["error"]
    assert not gpuctl_known_hosts_path().exists()


def test_accept_new_records_the_key_then_connects_strictly(sshd, tmp_path, capsys):
    config = write_config(tmp_path, [sshd.pod_entry("p", host_key="accept-new")])
    code, doc = status_json(config, capsys)
    assert (code, pod(doc, "p")["state"]) == (0, "online")
    recorded = gpuctl_known_hosts_path().read_text()
    assert recorded.strip() == sshd.known_hosts_line().strip()
    # Now pinned: strict accepts it, and nothing is written to ~/.ssh.
    config = write_config(tmp_path, [sshd.pod_entry("p", host_key="strict")])
    code, doc = status_json(config, capsys)
    assert code == 0
    assert not (Path(os.environ["HOME"]) / ".ssh" / "known_hosts").exists()


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_a_changed_host_key_is_refused_loudly_under_both_policies(sshd, tmp_path, capsys, policy):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other_key = (tmp_path / "other.pub").read_text().split()[:2]
    path = gpuctl_known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other_key)}\n")
    before = path.read_text()
    config = write_config(tmp_path, [sshd.pod_entry("p", host_key=policy)])
    code, doc = status_json(config, capsys)
    p = pod(doc, "p")
    assert (code, p["error_kind"]) == (1, "host-key-changed")
    assert "HOST KEY CHANGED" in p["error"] and "ssh-keygen -R" in p["error"]
    assert path.read_text() == before, "a changed key is never recorded"


def test_host_key_pinned_in_users_known_hosts_is_honoured(sshd, tmp_path, capsys, isolated_home):
    (isolated_home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    config = write_config(tmp_path, [sshd.pod_entry("p")])
    assert status_json(config, capsys)[0] == 0


def test_an_ssh_config_alias_alone_is_a_complete_pod(sshd, tmp_path, capsys, isolated_home):
    trust(sshd)
    (isolated_home / ".ssh" / "config").write_text(
        f"Host trainer\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
    )
    config = write_config(tmp_path, [{"name": "t", "host": "trainer"}], defaults={"user": "nobody-by-default"})
    code, doc = status_json(config, capsys)
    assert (code, pod(doc, "t")["state"]) == (0, "online"), pod(doc, "t")["error"]


def test_gpu_fields_the_driver_cannot_report_are_null(sshd, tmp_path, capsys):
    trust(sshd)
    original = sshd.gpu_state()
    try:
        sshd.set_gpus([{**original["gpus"][0], "power.draw": "[N/A]", "power.limit": "[Not Supported]"}])
        config = write_config(tmp_path, [sshd.pod_entry("p")])
        code, doc = status_json(config, capsys)
        (gpu,) = pod(doc, "p")["gpus"]
        assert (code, gpu["power_w"], gpu["power_limit_w"]) == (0, None, None)
        assert gpu["temp_c"] == original["gpus"][0]["temperature.gpu"]
    finally:
        sshd.set_gpus(original["gpus"], fail=original.get("fail"))


def test_a_driver_failure_is_shown_as_a_gpu_error_not_a_pod_failure(sshd, tmp_path, capsys):
    trust(sshd)
    original = sshd.gpu_state()
    try:
        sshd.set_gpus(original["gpus"], fail="driver")
        config = write_config(tmp_path, [sshd.pod_entry("p")])
        code, doc = status_json(config, capsys)
        p = pod(doc, "p")
        assert (code, p["state"], p["gpu_status"]) == (0, "online", "error")
        assert "couldn't communicate with the NVIDIA driver" in p["gpu_error"]
    finally:
        sshd.set_gpus(original["gpus"], fail=original.get("fail"))


def test_a_pod_without_gpu_is_a_plain_state(tmp_path, capsys):
    (tmp_path / "pod-home").mkdir()
    with SshdServer(nvidia_smi=False, env={"HOME": str(tmp_path / "pod-home")}) as server:
        server.start()
        trust(server)
        config = write_config(tmp_path, [server.pod_entry("cpu")])
        code, doc = status_json(config, capsys)
        p = pod(doc, "cpu")
        assert (code, p["state"], p["gpu_status"], p["gpus"], p["gpu_error"]) == (0, "online", "none", [], None)
        assert main(["--config", str(config), "status"]) == 0
        assert "no GPU" in capsys.readouterr().out


def test_pod_without_python3_falls_back_to_shell_exec(sshd_nopython, tmp_path, capsys):
    trust(sshd_nopython)
    config = write_config(tmp_path, [sshd_nopython.pod_entry("bare")])
    code, doc = status_json(config, capsys)
    p = pod(doc, "bare")
    assert (code, p["state"], p["transport"], p["gpu_status"]) == (0, "online", "exec", "ok"), p["error"]
    assert len(p["gpus"]) == len(sshd_nopython.gpu_state()["gpus"])
    assert p["disk"]["total_bytes"] > 0 and len(p["load"]) == 3 and p["uptime_s"] > 0


def test_tmux_sessions_on_the_pod_are_listed(sshd, tmp_path, capsys):
    trust(sshd)
    env = {**os.environ, **sshd.session_env}
    subprocess.run(sshd.ssh_argv("tmux new-session -d -s status-test 'sleep 60'"), check=True, env=env)
    try:
        config = write_config(tmp_path, [sshd.pod_entry("p")])
        code, doc = status_json(config, capsys)
        names = [s["name"] for s in pod(doc, "p")["sessions"]]
        assert "status-test" in names
    finally:
        subprocess.run(sshd.ssh_argv("tmux kill-session -t =status-test"), env=env)


async def test_the_agent_comes_back_after_sshd_restarts(sshd_fresh, tmp_path):
    trust(sshd_fresh)
    config = parse_config(yaml.safe_dump({"pods": [sshd_fresh.pod_entry("p")]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        first = await wait_for(fleet, "p", lambda p: p.state == "online")
        sshd_fresh.stop()
        down = await wait_for(fleet, "p", lambda p: p.state in ("reconnecting", "offline"))
        assert down.error
        sshd_fresh.start()
        back = await wait_for(fleet, "p", lambda p: p.state == "online" and p.sampled_at > first.sampled_at, timeout=40)
        assert back.error is None and back.gpus


async def test_interval_change_reaches_the_agent(sshd, tmp_path):
    trust(sshd)
    config = parse_config(yaml.safe_dump({"pods": [sshd.pod_entry("p", interval=5)]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        first = await wait_for(fleet, "p", lambda p: p.state == "online")
        fleet.set_interval(0.2)
        # At 5 s per sample, two more samples within 3 s can only come from the new interval.
        second = await wait_for(fleet, "p", lambda p: p.sampled_at > first.sampled_at, timeout=3)
        await wait_for(fleet, "p", lambda p: p.sampled_at > second.sampled_at, timeout=3)


def test_status_cli_in_a_subprocess_prints_a_plain_table(sshd, tmp_path):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("a100", price_per_hour=1.29)])
    out = subprocess.run([sys.executable, "-m", "tui.cli", "--config", str(config), "status"],
                         capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["POD", "STATE", "GPU", "TEMP", "UTIL", "MEMORY", "POWER", "DISK", "LOAD", "UP", "$/H", "SPENT"]
    assert rows[0].startswith("a100") and "online" in rows[0] and "1.29" in rows[0]
    assert len(rows) == len(sshd.gpu_state()["gpus"])
    assert "\x1b[" not in out.stdout, "no colour codes when stdout is not a terminal"


def test_a_malformed_config_is_exit_2_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("pods:\n  - name: a\n    host: h\n    prot: 22\n")
    assert main(["--config", str(path), "status"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4" in err and "did you mean 'port'" in err


def _agent_pids(server: SshdServer) -> set[int]:
    """PIDs of gpuctl agents running under this sshd (its process tree)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), cmdline)
    def under_sshd(pid):
        while pid in parents:
            if pid == server.pid:
                return True
            pid = parents[pid][0]
        return False
    ours = (b"b64decode", b"sim_nvidia_smi")  # the agent, and the nvidia-smi loop it keeps
    return {pid for pid, (_, cmd) in parents.items() if any(o in cmd for o in ours) and under_sshd(pid)}


async def test_no_agent_is_left_running_on_the_pod_after_disconnect(sshd_fresh, tmp_path):
    trust(sshd_fresh)
    config = parse_config(yaml.safe_dump({"pods": [sshd_fresh.pod_entry("p")]}), tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        first = await wait_for(fleet, "p", lambda p: p.state == "online")
        await wait_for(fleet, "p", lambda p: p.sampled_at > first.sampled_at)
        await wait_for(fleet, "p", lambda p: p.health is not None)  # the health loop has started by then
        agents = _agent_pids(sshd_fresh)
        # The agent, its resident nvidia-smi loop and the GPU health thread's loop
        # (backends/pod_agent/health.py): all must go with the channel.
        assert len(agents) == 3, "the agent and its two resident nvidia-smi loops"
    deadline = asyncio.get_running_loop().time() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in agents):
        assert asyncio.get_running_loop().time() < deadline, "the agent outlived its channel"
        await asyncio.sleep(0.1)


def test_status_json_watch_prints_one_document_per_line(sshd, tmp_path):
    trust(sshd)
    config = write_config(tmp_path, [sshd.pod_entry("p")])
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "--config", str(config), "status", "--json",
                             "--watch", "--interval", "0.5"], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        docs = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert all(d["pods"][0]["state"] == "online" for d in docs)
    assert docs[-1]["pods"][0]["sampled_at"] > docs[0]["pods"][0]["sampled_at"]
