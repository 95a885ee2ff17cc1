"""Money never disappears: spend is accumulated per pod and kept (issue 12, item 3).

Real parts: the RunPod stand-in for stop and teardown, the sshd fixture for a pod that
drops off the network, and a new Fleet over the same config for a gpuctl restart. The
ledger itself is driven with explicit times (no sleeping, no timed assertions).
"""

from __future__ import annotations

import asyncio

import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.providers.spend import SpendBook, default_path
from tests.support.pinning import trust
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod

T0 = 1_800_000_000.0


def provider(url: str, ident: str) -> str:
    return f"{{type: runpod, id: {ident}, api_url: '{url}', api_key_env: TEST_PROVIDER_KEY}}"


async def wait_for(fleet: Fleet, name: str, predicate, timeout: float = 30.0):
    """The first snapshot of `name` that satisfies `predicate` (the bound only ends a hang)."""
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for snap in sub:
                if predicate(snap.pod(name)):
                    return snap.pod(name)
    finally:
        sub.close()


def test_the_ledger_banks_each_run_and_never_goes_down(tmp_path):
    path = tmp_path / "spend.json"
    book = SpendBook(path)
    totals = [book.record("p", 2.0, T0, "provider", now=T0 + 3600).total]      # 1 h at $2
    totals.append(book.record("p", 2.0, None, None, now=T0 + 4000).total)      # stopped
    restarted = SpendBook(path, ["p"])                                            # gpuctl restarts
    totals.append(restarted.record("p", 2.0, None, None, now=T0 + 5000).total)
    # it runs again, started later: the first run is banked, the second adds to it
    totals.append(restarted.record("p", 2.0, T0 + 7200, "provider", now=T0 + 7200 + 1800).total)
    # the provider's uptime wobbles by a few seconds between polls: the same run
    totals.append(restarted.record("p", 2.0, T0 + 7200 + 5, "provider", now=T0 + 7200 + 1810).total)
    assert totals == sorted(totals)
    assert totals[0] == totals[1] == totals[2] == 2.0
    assert totals[3] == 3.0 and totals[4] > 3.0
    assert SpendBook(path, ["other"]).ledgers == {}  # removed from the config: forgotten


def test_a_spot_pod_back_soon_after_a_preemption_is_not_charged_for_its_outage(tmp_path):
    # the demo's spot pod: 180 s running, preempted for 90 s, back with a new start time
    book = SpendBook(tmp_path / "s.json")
    book.record("p", 3.6, T0, "provider", now=T0 + 180)                       # 180 s: $0.18
    book.record("p", 3.6, None, None, now=T0 + 200)                           # preempted
    back = book.record("p", 3.6, T0 + 270, "provider", now=T0 + 270 + 100)   # back 270 s after its start
    assert (back.banked, back.current, back.since) == (0.18, 0.1, T0 + 270)
    # while it runs, the same run's start wobbling by seconds stays one run
    assert book.record("p", 3.6, T0 + 275, "provider", now=T0 + 270 + 200).total == 0.38


def test_first_seen_counts_from_when_gpuctl_saw_it(tmp_path):
    book = SpendBook(tmp_path / "s.json")
    assert book.record("p", 3.6, None, "first_seen", now=T0).total == 0.0
    ledger = book.record("p", 3.6, None, "first_seen", now=T0 + 1000)
    assert (ledger.total, ledger.since, ledger.source) == (1.0, T0, "first_seen")
    book.record("p", 3.6, None, None, now=T0 + 2000)                          # went away
    again = book.record("p", 3.6, None, "first_seen", now=T0 + 3000)         # back: a new run
    assert (again.total, again.since) == (1.0, T0 + 3000)


async def test_stop_teardown_and_restart_keep_the_spend(monkeypatch, tmp_path, refused_port):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    fake = FakeRunPod({"pod1": runpod_pod("pod1")})
    fake.settle = 0
    with ProviderServer(fake) as server:
        config = parse_config(
            f"pods:\n  - {{name: spot, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
            f"      provider: {provider(server.url, 'pod1')}}}\n", tmp_path / "c.yaml")
        async with Fleet(config) as fleet:
            running = (await fleet.wait_settled(timeout=30)).pod("spot")
            assert running.spend_usd >= round(3.28 * 420 / 3600, 4) - 0.01  # the provider's uptime
            await fleet.stop_instance("spot")
            await fleet.providers.poll_once()
            stopped = fleet.snapshot().pod("spot")
            assert (stopped.state, stopped.provider_state) == ("stopped", "stopped")
            assert stopped.spend_usd >= running.spend_usd
            await fleet.teardown_instance("spot", force=True)
            await fleet.providers.poll_once()
            gone = fleet.snapshot().pod("spot")
            assert (gone.state, gone.provider_state) == ("terminated", "terminated")
            assert gone.spend_usd >= stopped.spend_usd
        # gpuctl restarts: the new Fleet shows the kept figure before anything answers
        again = Fleet(config).snapshot().pod("spot")
        assert again.spend_usd == gone.spend_usd
        assert running.spend_from == again.spend_from == "provider"  # the provider's start time
    assert default_path(config.path).is_file()


async def test_a_pod_that_drops_off_keeps_its_spend_and_its_values_turn_stale(sshd_fresh, tmp_path):
    trust(sshd_fresh)
    config = parse_config(yaml.safe_dump({"pods": [sshd_fresh.pod_entry("p", price_per_hour=36000.0)]}),
                          tmp_path / "c.yaml")
    async with Fleet(config) as fleet:
        up = await wait_for(fleet, "p", lambda p: p.state == "online" and p.spend_usd)
        assert not up.stale and up.received_at is not None
        sshd_fresh.stop()
        down = await wait_for(fleet, "p", lambda p: p.state in ("reconnecting", "offline"))
        assert down.spend_usd is not None and down.spend_usd >= up.spend_usd
        # the last GPUs stay, marked as last known, with the time they arrived
        assert down.stale and down.gpus and down.received_at >= up.received_at
        assert down.age_s(down.received_at + 90) == 90
    kept = Fleet(config).snapshot().pod("p")
    assert kept.spend_usd >= up.spend_usd
    # no provider: from when gpuctl first saw it (the machine's boot may be the host's)
    assert up.spend_from == "first_seen"


def test_the_pod_header_says_which_clock_the_spend_counts_from():
    from sessions.snapshot import PodSnapshot
    from tui.screens.pod_screen import pod_header

    pod = PodSnapshot("h100x8", "h", state="online", price_per_hour=23.92, spend_usd=0.0, uptime_s=3552.0,
                      spend_from="provider")
    assert "spent $0.00 (from provider start) · host up 59m12s" in pod_header(pod)


def test_a_ledger_kept_from_the_machines_uptime_carries_on_from_first_seen(tmp_path):
    """Spend no longer counts from the machine's boot (in a container, the host's): a
    ledger written before keeps its dollars and counts on from when gpuctl sees it."""
    book = SpendBook(tmp_path / "s.json")
    old = book.record("p", 3.6, T0 - 3000, "uptime", now=T0).total                  # written by an older gpuctl
    again = book.record("p", 3.6, None, "first_seen", now=T0 + 10)
    assert (again.source, again.since, again.banked) == ("first_seen", T0 + 10, old)
    assert book.record("p", 3.6, None, "first_seen", now=T0 + 1010).total == round(old + 1.0, 4)


def test_gpuctls_own_stop_ends_the_run_whichever_process_counted_it(tmp_path):
    """QA (issue 12, item 5): a `gpuctl watch` beside the TUI saw the stopped pod only
    reconnecting (its provider poll not yet due) and kept counting; the ledger keeps the
    largest figure, so the spend depended on which process counted it. gpuctl's stop
    request (`provider_ops.ended_by_gpuctl_at`) ends the run for both."""
    path, stop = tmp_path / "spend.json", T0 + 600
    tui, watch = SpendBook(path), SpendBook(path)
    tui.record("p", 3.6, T0, "provider", now=T0 + 500)
    watch.record("p", 3.6, T0, "provider", now=T0 + 500)
    # the TUI stops it at T0+600; watch still sees it reconnecting, the provider running
    assert tui.record("p", 3.6, T0, "provider", now=T0 + 610, until=stop).total == 0.6
    assert watch.record("p", 3.6, T0, "provider", now=T0 + 900).total == 0.9  # before the record
    watch.flush()
    assert watch.record("p", 3.6, T0, "provider", now=T0 + 1200, until=stop).total == 0.6
    watch.flush()
    tui.flush()  # the file's larger uncapped figure does not win over the stop
    assert tui.record("p", 3.6, None, None, now=T0 + 1300, until=stop).total == 0.6
    assert SpendBook(path, ["p"]).ledgers["p"].total == 0.6  # what a restarted gpuctl shows
    # a later run (started from the console) counts again, on top
    again = tui.record("p", 3.6, T0 + 3600, "provider", now=T0 + 4600, until=stop)
    assert (again.banked, again.current, again.until) == (0.6, 1.0, None)


def test_a_stop_that_never_happened_does_not_cap_the_run(tmp_path):
    """The stop timed out and the instance runs on: its record is forgotten when the
    provider is seen running (`provider_ops.is_preempted`), and the run counts on."""
    book = SpendBook(tmp_path / "s.json")
    assert book.record("p", 3.6, T0, "provider", now=T0 + 700, until=T0 + 600).total == 0.6
    assert book.record("p", 3.6, T0, "provider", now=T0 + 1000).total == 1.0


def test_the_pod_header_gives_the_run_time_of_the_spend_and_a_stopped_pods_reason_first():
    """QA (issue 12, item 6): 'spent $0.05 over 25s (from provider start) · up 4h05m' (the
    host's /proc/uptime, the same in every container); a stopped pod's reason came last,
    after the host, cut at '· stopped:' on a 160-column screen."""
    from sessions.snapshot import PodSnapshot
    from tui.screens.pod_screen import pod_header

    running = PodSnapshot("a100x4", "root@127.0.0.1:45197", state="online", price_per_hour=7.56, spend_usd=0.05,
                          spend_since=T0 - 25, spend_from="provider", uptime_s=14700.0)
    said = pod_header(running, now=T0)
    assert "spent $0.05 over 25s (from provider start)" in said and " up " not in said
    stopped = PodSnapshot("a100x4", "root@127.0.0.1:45197", state="stopped", price_per_hour=7.56, spend_usd=0.05,
                          spend_since=T0 - 25, spend_from="provider", uptime_s=14700.0,
                          error="stopped: runpod says the instance is stopped (EXITED)", provider_state="stopped")
    said = pod_header(stopped, now=T0)
    assert said.startswith("a100x4 · stopped (runpod says the instance is stopped (EXITED)) · spent $0.05")
    assert "/h" not in said and " up " not in said and len(said) < 160
