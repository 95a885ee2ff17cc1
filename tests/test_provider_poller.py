"""Cost and preemption in snapshots: the merge rules, and the poller inside a real Fleet."""

from __future__ import annotations

import asyncio
import json

import pytest

from backends.providers.base import InstanceInfo, InstanceState
from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.progress.tracker import Progress
from sessions.providers.poller import ProviderPoller, ProviderView, merge, running_since
from sessions.snapshot import PodSnapshot, PodState, SessionSnapshot, SessionState
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
from tui.cli import main

NOW = 1_800_000_000.0


def pod_cfg(price: str = "", provider: str = "{type: runpod, id: pod1}"):
    line = f", price_per_hour: {price}" if price else ""
    return parse_config(f"pods:\n  - {{name: p, host: h{line}, provider: {provider}}}\n", "c.yaml").pods[0]


def snap(state: str = PodState.ONLINE, uptime: float | None = 7200.0, etas=()) -> PodSnapshot:
    sessions = tuple(SessionSnapshot(f"s{i}", SessionState.RUNNING, progress=Progress(eta_s=e)) for i, e in enumerate(etas))
    sessions += (SessionSnapshot("done", SessionState.EXITED, progress=Progress(eta_s=99999.0)),)
    return PodSnapshot("p", "h", state=state, uptime_s=uptime, sessions=sessions)


def running(price=3.0, started=NOW - 1800, uptime=None, **kw) -> ProviderView:
    return ProviderView(InstanceInfo("pod1", InstanceState.RUNNING, "RUNNING", price_per_hour=price,
                                     started_at=started, uptime_s=uptime, **kw), polled_at=NOW)


def test_the_provider_price_and_start_time_give_the_run_start_and_the_longest_eta_the_projection():
    out = merge(snap(etas=(3600.0, 7200.0)), pod_cfg(), running(), NOW)
    assert (out.price_per_hour, out.price_source, out.projected_usd) == (3.0, "provider", 6.0)
    assert (out.provider_state, out.provider_error, out.state) == ("running", None, PodState.ONLINE)
    assert out.spend_usd is None  # the ledger (sessions/providers/spend.py) is the one truth
    assert running_since(out, running(), NOW) == (NOW - 1800, "provider")


def test_a_config_price_wins_over_the_providers():
    out = merge(snap(), pod_cfg(price="2.5"), running(price=3.0), NOW)
    assert (out.price_per_hour, out.price_source) == (2.5, "config")


def test_the_providers_uptime_beats_its_start_time_and_first_seen_is_the_fallback():
    assert running_since(snap(), running(uptime=360.0), NOW) == (NOW - 360.0, "provider")
    no_start = ProviderView(InstanceInfo("pod1", InstanceState.RUNNING, price_per_hour=4.0), polled_at=NOW)
    # not the machine's uptime: in a container that is the host's boot
    assert running_since(snap(uptime=900.0), no_start, NOW) == (None, "first_seen")
    assert running_since(snap(uptime=3600.0), None, NOW) == (None, "first_seen")
    assert running_since(snap(state=PodState.OFFLINE), None, NOW) == (None, None)
    for state in (PodState.STOPPED, PodState.TERMINATED, PodState.PREEMPTED):  # decided by lifecycle
        assert running_since(snap(state=state), running(), NOW) == (None, None)


def test_no_price_means_no_cost_figures():
    out = merge(snap(etas=(60.0,)), pod_cfg(), running(price=None), NOW)
    assert (out.price_per_hour, out.spend_usd, out.projected_usd, out.price_source) == (None, None, None, None)


def test_a_provider_error_is_a_note_not_a_state():
    out = merge(snap(state=PodState.ONLINE), pod_cfg(), ProviderView(error="runpod: boom (HTTP 500)"), NOW)
    assert (out.state, out.provider_error, out.provider_state) == (PodState.ONLINE, "runpod: boom (HTTP 500)", None)
    gone = merge(snap(state=PodState.OFFLINE), pod_cfg(), ProviderView(gone=True), NOW)
    assert gone.provider_state == "terminated"


# --- the poller -------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    fake = FakeRunPod({"pod1": runpod_pod("pod1"), "pod2": runpod_pod("pod2", "EXITED", name="spot")},
                      pod_types={"pod2": "INTERRUPTABLE"})
    with ProviderServer(fake) as server:
        yield server, fake


def provider(url: str, ident: str) -> str:
    return f"{{type: runpod, id: {ident}, api_url: '{url}', api_key_env: TEST_PROVIDER_KEY}}"


async def test_one_list_call_serves_every_pod_of_an_account(api):
    server, _ = api
    config = parse_config(
        f"pods:\n  - {{name: a, host: h, provider: {provider(server.url, 'pod1')}}}\n"
        f"  - {{name: b, host: h, provider: {provider(server.url, 'pod2')}}}\n"
        "  - {name: c, host: h}\n", "c.yaml")
    changed: list[str] = []
    poller = ProviderPoller(list(config.pods), changed.append)
    await poller.poll_once()
    assert sorted(changed) == ["a", "b"]
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v2/pods"), ("POST", "/graphql")]
    assert poller.views["a"].instance.price_per_hour == 3.28
    assert poller.views["b"].preempted is True


async def test_poll_now_starts_the_next_round_at_once(api):
    server, _ = api
    config = parse_config(f"pods:\n  - {{name: a, host: h, provider: {provider(server.url, 'pod1')}}}\n", "c.yaml")
    poller = ProviderPoller(list(config.pods), lambda name: None, interval=3600)
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(poller.first_round.wait(), 10)
        assert len(server.requests) == 1
        poller.poll_now()
        for _ in range(200):
            if len(server.requests) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(server.requests) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def local_tmux(tmp_path, monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    (tmp_path / "tmux").mkdir()
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path / "tmux"))


def test_status_json_shows_price_spend_and_preemption(api, tmp_path, capsys, local_tmux, refused_port):
    server, fake = api
    path = tmp_path / "config.yaml"
    path.write_text(
        "pods:\n"
        f"  - {{name: here, host: local, provider: {provider(server.url, 'pod1')}}}\n"
        f"  - {{name: spot, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
        f"      provider: {provider(server.url, 'pod2')}}}\n"
        f"  - {{name: lost, host: local, price_per_hour: 1.5, provider: {provider(server.url, 'nope')}}}\n")
    code = main(["--config", str(path), "status", "--json"])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    pods = {p["name"]: p for p in json.loads(out)["pods"]}
    here, spot, lost = pods["here"], pods["spot"], pods["lost"]
    assert code == 1  # spot is not online
    assert (here["state"], here["price_per_hour"], here["price_source"]) == ("online", 3.28, "provider")
    assert here["spend_usd"] == round(3.28 * 420 / 3600, 4)  # the provider's runtime.uptime
    assert (here["projected_usd"], here["provider_state"], here["provider_error"]) == (None, "running", None)
    assert (spot["state"], spot["error_kind"]) == ("preempted", "preempted")
    assert spot["error"] == "preempted: runpod took the instance back (EXITED)"
    assert (lost["state"], lost["price_per_hour"], lost["price_source"]) == ("online", 1.5, "config")
    assert lost["provider_state"] == "terminated" and lost["spend_usd"] is not None


async def test_a_failing_provider_leaves_the_pod_online_with_a_note(api, tmp_path, local_tmux, monkeypatch):
    server, fake = api
    fake.key = "some-other-key"
    config = parse_config(f"pods:\n  - {{name: here, host: local, provider: {provider(server.url, 'pod1')}}}\n",
                          tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        snapshot = (await fleet.wait_settled(timeout=30)).pod("here")
    assert snapshot.state == PodState.ONLINE
    assert snapshot.provider_error == "runpod: missing bearer token (HTTP 401, Unauthorized)"
    monkeypatch.delenv("TEST_PROVIDER_KEY")
    async with Fleet(config) as fleet:
        snapshot = (await fleet.wait_settled(timeout=30)).pod("here")
    assert snapshot.state == PodState.ONLINE
    assert snapshot.provider_error == "pod 'here': set TEST_PROVIDER_KEY to your RunPod API key"


async def test_a_stop_made_by_gpuctl_is_not_a_preemption(api, tmp_path, local_tmux, refused_port):
    server, fake = api
    fake.settle = 0
    fake.pod_types["pod1"] = "INTERRUPTABLE"
    config = parse_config(
        f"pods:\n  - {{name: spot, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
        f"      provider: {provider(server.url, 'pod1')}}}\n", tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        await fleet.wait_settled(timeout=30)
        result = await fleet.stop_instance("spot")
        await fleet.providers.poll_once()
        snapshot = fleet.snapshot().pod("spot")
    assert result.outcome == "done"
    # gpuctl's own stop: `stopped` (sessions/providers/lifecycle.py), not a preemption nor a network fault
    assert (snapshot.state, snapshot.provider_state) == (PodState.STOPPED, "stopped")
    assert (snapshot.error, snapshot.error_kind) == ("stopped: stopped by gpuctl", "stopped")
