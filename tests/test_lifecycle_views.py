"""What the screen says is true (issue 12, items 1-2), with real parts: the RunPod, Vast
and Lambda stand-ins (local HTTP servers speaking their API shapes), a real sshd pod
with a real tmux session, the Fleet, `status --json`'s document and the TUI (Pilot).

A stop or teardown gpuctl makes shows as `stopped`/`terminated` at once and stays so
after the provider's next poll; the pod's last values stay, flagged stale, and no
session on it is `running`; a preemption is `preempted`, stale; spend never goes down.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.fleet.facade import Fleet
from sessions.providers.ops import ActionRefused
from tests.support import pilot_wait
from tests.support.pinning import trust
from tests.support.provider_server import (
    KEY,
    FakeLambda,
    FakeRunPod,
    FakeVast,
    ProviderServer,
    lambda_instance,
    runpod_pod,
    vast_instance,
)
from tui.status_json import fleet_json

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux", "ssh"), pytest.mark.usefixtures("isolated_home")]

STAND_INS = {
    "runpod": (lambda: FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0), "pod1"),
    "vastai": (lambda: FakeVast({"4242": vast_instance(4242)}, settle=0), "4242"),
    "lambda": (lambda: FakeLambda({"lam-1": lambda_instance("lam-1")}, settle=0), "lam-1"),
}


def config_for(sshd, tmp_path, kind: str, url: str, ident: str):
    trust(sshd)
    provider = {"type": kind, "id": ident, "api_url": url, "api_key_env": "TEST_PROVIDER_KEY"}
    entry = sshd.pod_entry("p", price_per_hour=36.0, provider=provider,
                           sessions=[{"name": "train", "command": "sleep 600"}])
    return parse_config(yaml.safe_dump({"pods": [entry]}, sort_keys=False), tmp_path / "config.yaml")


async def settle_on(fleet: Fleet, predicate, what: str, timeout: float = 30.0):
    """The first snapshot of pod `p` that satisfies `predicate` (the bound only ends a hang)."""
    sub = fleet.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for snap in sub:
                if predicate(snap.pod("p")):
                    return snap.pod("p")
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {fleet.snapshot().pod('p')}") from None
    finally:
        sub.close()


def assert_last_known(doc_pod: dict, state: str) -> None:
    """`status --json`'s pod: the lifecycle word, values flagged stale, no session running."""
    assert doc_pod["state"] == state and doc_pod["stale"] is True
    assert doc_pod["sampled_at"] is not None and doc_pod["received_at"] is not None
    assert doc_pod["gpus"] and all(g["stale"] and g["sampled_at"] == doc_pod["sampled_at"] for g in doc_pod["gpus"])
    train = next(s for s in doc_pod["sessions"] if s["name"] == "train")
    assert (train["state"], train["last_state"], train["stale"]) == ("unknown", "running", True)
    assert not [s for s in doc_pod["sessions"] if s["state"] == "running"]


@pytest.mark.parametrize("kind", list(STAND_INS))
async def test_stop_and_teardown_through_each_provider_show_at_once_and_stay_after_the_poll(
        kind, sshd_fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    make, ident = STAND_INS[kind]
    with ProviderServer(make()) as server:
        config = config_for(sshd_fresh, tmp_path, kind, server.url, ident)
        spent: list[float] = []
        async with Fleet(config) as fleet:
            await fleet.launch("p", "train")
            live = await settle_on(fleet, lambda p: p.state == "online" and p.gpus and any(
                s.name == "train" and s.state == "running" for s in p.sessions), "the session running")
            assert not live.stale and fleet_json(fleet.snapshot())["pods"][0]["stale"] is False
            spent.append(fleet.snapshot().pod("p").spend_usd)
            if kind == "lambda":  # no stop at Lambda: refused, never turned into a terminate
                with pytest.raises(ActionRefused):
                    await fleet.stop_instance("p")
                assert fleet.snapshot().pod("p").state == "online"
            else:
                result = await fleet.stop_instance("p", force=True)
                assert result.outcome == "done"
                # at once, before any provider poll, while the SSH link may still be up
                stopped = fleet.snapshot().pod("p")
                assert (stopped.state, stopped.error, stopped.stale) == ("stopped", "stopped: stopped by gpuctl", True)
                assert_last_known(fleet_json(fleet.snapshot())["pods"][0], "stopped")
                sshd_fresh.stop()  # the instance is down
                await fleet.providers.poll_once()  # one provider poll confirms it
                confirmed = fleet.snapshot().pod("p")
                assert (confirmed.state, confirmed.provider_state) == ("stopped", "stopped")
                assert_last_known(fleet_json(fleet.snapshot())["pods"][0], "stopped")
                spent.append(confirmed.spend_usd)
            await fleet.teardown_instance("p", force=True)
            gone = fleet.snapshot().pod("p")
            assert (gone.state, gone.error) == ("terminated", "terminated: torn down by gpuctl")
            if sshd_fresh.running:
                sshd_fresh.stop()
            await fleet.providers.poll_once()
            doc = fleet_json(fleet.snapshot())["pods"][0]
            assert (doc["state"], doc["provider_state"]) == ("terminated", "terminated")
            assert_last_known(doc, "terminated")
            spent.append(doc["spend_usd"])
        # gpuctl restarts: the torn-down pod's spend is still there, and it never went down
        spent.append(Fleet(config).snapshot().pod("p").spend_usd)
        assert spent == sorted(spent) and spent[-1] > 0


async def test_a_preempted_spot_pod_is_preempted_and_stale(sshd_fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, pod_types={"pod1": "INTERRUPTABLE"}, settle=0)
    with ProviderServer(fake) as server:
        config = config_for(sshd_fresh, tmp_path, "runpod", server.url, "pod1")
        async with Fleet(config) as fleet:
            await fleet.launch("p", "train")
            up = await settle_on(fleet, lambda p: p.state == "online" and any(
                s.state == "running" for s in p.sessions), "the session running")
            fake.instances["pod1"].update(status="EXITED", runtime=None)  # RunPod took it back
            sshd_fresh.stop()
            await settle_on(fleet, lambda p: p.state in ("reconnecting", "offline"), "the link down")
            await fleet.providers.poll_once()
            pod = fleet.snapshot().pod("p")
            assert (pod.state, pod.error_kind, pod.stale) == ("preempted", "preempted", True)
            assert pod.error == "preempted: runpod took the instance back (EXITED)"
            assert pod.spend_usd >= up.spend_usd
            assert_last_known(fleet_json(fleet.snapshot())["pods"][0], "preempted")


async def test_the_tui_row_says_stopped_then_terminated_with_its_values_dimmed(sshd_fresh, tmp_path, monkeypatch):
    from tui.app import make_app
    from tui.dialogs.confirm import ConfirmDialog, TypedConfirmDialog
    from tui.widgets.fleet_table import FleetTable

    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    with ProviderServer(FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)) as server:
        config = config_for(sshd_fresh, tmp_path, "runpod", server.url, "pod1")
        app = make_app(config, state_file=tmp_path / "tui.json")
        async with app.run_test(size=(160, 48)) as pilot:
            async def until(predicate, what: str):
                await pilot_wait.until(pilot, predicate, what=what)

            def row():
                table = app.screen.query_one(FleetTable)
                return table.cell_texts("p"), table._cells["p"]

            await until(lambda: app.fleet is not None and app.snapshot.pods
                        and app.snapshot.pod("p").state == "online", "the pod online")
            await app.fleet.launch("p", "train")
            await until(lambda: row()[1]["session"][0][0] == "train" and row()[1]["session"][0][1] == "",
                        "the session in the row")
            await pilot.press("s")
            await until(lambda: isinstance(app.screen, ConfirmDialog), "the stop dialog")
            await pilot.press("y")
            await until(lambda: row()[1]["state"][0] == ("stopped", "stopped"), "the row saying stopped")
            texts, tones = row()
            assert {tone for key in ("gpus", "mem", "session", "step", "rate", "loss", "eta")
                    for _, tone in tones[key]} == {"stale"}  # dimmed: no live colour, no hot, no green
            assert texts[1] == "stopped"
            await pilot.press("T")
            await until(lambda: isinstance(app.screen, TypedConfirmDialog), "the teardown dialog")
            await pilot.press(*"p", "enter")
            await until(lambda: row()[1]["state"][0] == ("terminated", "terminated"), "the row saying terminated")
            assert json.dumps(fleet_json(app.snapshot)["pods"][0]["state"]) == '"terminated"'


HEADLESS = {  # the provider's answer about an instance that is down -> the state `status --json` shows
    "runpod stopped": ("runpod", lambda: FakeRunPod({"pod1": runpod_pod("pod1", "EXITED")}), "pod1", "stopped"),
    "runpod gone": ("runpod", lambda: FakeRunPod({}), "pod1", "terminated"),
    "vastai stopped": ("vastai", lambda: FakeVast({"4242": vast_instance(4242, "exited", intended="stopped")}),
                       "4242", "stopped"),
    "vastai bid outbid": ("vastai", lambda: FakeVast({"4242": vast_instance(4242, "exited", is_bid=True)}),
                          "4242", "preempted"),
    "lambda terminated": ("lambda", lambda: FakeLambda({"lam-1": lambda_instance("lam-1", "terminated")}),
                          "lam-1", "terminated"),
}


@pytest.mark.parametrize("case", list(HEADLESS))
def test_status_json_says_what_the_provider_says_of_a_pod_ssh_cannot_reach(case, tmp_path, monkeypatch, capsys,
                                                                           refused_port):
    """A stop or teardown made elsewhere (`gpuctl stop` in another shell, the console):
    one `status --json` asks the provider once and says the lifecycle's word."""
    from tui.cli import main

    kind, make, ident, state = HEADLESS[case]
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    with ProviderServer(make()) as server:
        provider = {"type": kind, "id": ident, "api_url": server.url, "api_key_env": "TEST_PROVIDER_KEY"}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"pods": [{"name": "p", "host": "127.0.0.1", "port": refused_port,
                                                  "connect_timeout": 2, "provider": provider}]}))
        code = main(["--config", str(path), "status", "--json"])
    pod = json.loads(capsys.readouterr().out)["pods"][0]
    assert code == 1  # not online
    assert (pod["state"], pod["error_kind"]) == (state, state)
    assert pod["stale"] is False and pod["gpus"] == []  # never seen: nothing to show as last known
