"""Stop and teardown policy (sessions.providers.ops) against the local fake APIs."""

from __future__ import annotations

import pytest

from backends.providers.base import InstanceInfo, InstanceState, ProviderError
from sessions.providers import ops as provider_ops
from sessions.checkpoints import teardown_guard
from sessions.config.loader import parse_config
from sessions.providers.ops import ActionRefused, ProviderSetupError
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

ENV = {"TEST_PROVIDER_KEY": KEY}


class Clock:
    """Fake time: `sleep` advances `now` instantly and records the delays."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.t += delay


def config_for(kind: str, ident: str, url: str | None, extra: str = ""):
    lines = ["pods:", "  - name: box", "    host: 203.0.113.9", "    provider:", f"      type: {kind}",
             f"      id: '{ident}'", "      api_key_env: TEST_PROVIDER_KEY"]
    if url:
        lines.append(f"      api_url: {url}")
    return parse_config("\n".join(lines) + "\n" + extra, "cfg.yaml")


async def allow(pod):
    return True, "step_1200.pt verified at ~/ckpt/step_1200.pt"


async def deny(pod):
    return False, "step_1200.pt has no verified local copy"


def run(action, config, clock: Clock, messages: list[str] | None = None, **kw):
    return action(config, config.pods[0], environ=ENV, sleep=clock.sleep, clock=clock.now,
                  poll_every=5.0, progress=(messages.append if messages is not None else None), **kw)


@pytest.fixture
def runpod():
    fake = FakeRunPod({"pod1": runpod_pod("pod1")}, pod_types={"pod1": "INTERRUPTABLE"})
    with ProviderServer(fake) as server:
        yield server, fake


async def test_stop_asks_polls_until_stopped_and_says_what_is_kept(runpod):
    server, fake = runpod
    clock, messages = Clock(), []
    config = config_for("runpod", "pod1", server.url)
    result = await run(provider_ops.stop, config, clock, messages)
    assert (result.outcome, result.state) == ("done", InstanceState.STOPPED)
    assert "/workspace" in result.kept and "container disk is wiped" in result.gone
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v2/pods/pod1"), ("POST", "/v2/pods/pod1/action"),
        ("GET", "/v2/pods/pod1"),                       # still RUNNING
        ("GET", "/v2/pods/pod1"), ("POST", "/graphql"),  # EXITED: is it a spot pod?
    ]
    assert server.requests[1].json == {"action": "stop"}
    assert clock.sleeps == [5.0]
    assert messages[0] == "box: asking runpod to stop pod1"
    assert messages[-1] == "box: the provider says EXITED"
    # It is a spot pod, EXITED: but gpuctl stopped it, so it is not preempted.
    entry = config.pods[0].provider
    info = InstanceInfo("pod1", InstanceState.STOPPED, preempted=True)
    assert provider_ops.stopped_by_gpuctl(entry) and not provider_ops.is_preempted(entry, info)
    # Seen running again, the record is dropped: a later EXITED is a preemption.
    assert not provider_ops.is_preempted(entry, InstanceInfo("pod1", InstanceState.RUNNING))
    assert provider_ops.is_preempted(entry, info)


async def test_stop_of_a_stopped_pod_does_nothing(runpod):
    server, fake = runpod
    fake.instances["pod1"]["status"] = "EXITED"
    result = await run(provider_ops.stop, config_for("runpod", "pod1", server.url), Clock())
    assert (result.outcome, result.message) == ("already", "pod 'box' is already stopped (EXITED)")
    assert server.calls("POST", "/v2/pods/pod1/action") == []


async def test_stop_that_never_settles_times_out_plainly(runpod):
    server, fake = runpod
    fake.settle = 1000
    clock = Clock()
    result = await run(provider_ops.stop, config_for("runpod", "pod1", server.url), clock, timeout=30)
    assert (result.outcome, result.state) == ("timeout", InstanceState.RUNNING)
    assert "after 30s it still says RUNNING" in result.message
    assert clock.t <= 30


async def test_lambda_stop_is_refused_and_never_becomes_a_terminate():
    with ProviderServer(FakeLambda({"abc": lambda_instance("abc")})) as server:
        with pytest.raises(ActionRefused) as err:
            await run(provider_ops.stop, config_for("lambda", "abc", server.url), Clock())
    assert "Lambda has no stop" in str(err.value)
    assert server.requests == []


async def test_teardown_refused_by_the_guard_sends_no_delete(runpod):
    server, _ = runpod
    with pytest.raises(ActionRefused) as err:
        await run(provider_ops.teardown, config_for("runpod", "pod1", server.url), Clock(), guard=deny)
    assert "no verified local copy" in str(err.value) and "--force" in str(err.value)
    assert server.calls("DELETE") == []


async def test_the_default_guard_refuses_when_it_cannot_look(runpod, refused_port):
    server, _ = runpod
    config = parse_config(
        f"pods:\n  - {{name: box, host: 127.0.0.1, port: {refused_port}, connect_timeout: 2,\n"
        "      sessions: [{name: train}],\n"
        f"      provider: {{type: runpod, id: pod1, api_url: '{server.url}', api_key_env: TEST_PROVIDER_KEY}}}}\n",
        "cfg.yaml")
    with pytest.raises(ActionRefused) as err:
        await run(provider_ops.teardown, config, Clock())
    assert "cannot check its checkpoints" in str(err.value) and "--force" in str(err.value)
    with pytest.raises(ActionRefused):
        await run(provider_ops.teardown, config, Clock(), guard=teardown_guard.guard_for(config))
    assert server.calls("DELETE") == []


async def test_teardown_deletes_polls_until_gone_and_is_idempotent(runpod):
    server, _ = runpod
    config = config_for("runpod", "pod1", server.url)
    result = await run(provider_ops.teardown, config, Clock(), guard=allow)
    assert (result.outcome, result.message) == ("done", "pod 'box' is gone")
    assert result.kept == "step_1200.pt verified at ~/ckpt/step_1200.pt"
    assert "volume disk" in result.gone
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v2/pods/pod1"), ("DELETE", "/v2/pods/pod1"), ("GET", "/v2/pods/pod1"), ("GET", "/v2/pods/pod1")]
    again = await run(provider_ops.teardown, config, Clock(), guard=deny)  # gone: the guard is not even asked
    assert (again.outcome, again.message) == ("already", "pod 'box' is already gone (runpod does not know pod1)")


async def test_forced_teardown_skips_the_guard(runpod):
    server, _ = runpod
    result = await run(provider_ops.teardown, config_for("runpod", "pod1", server.url), Clock(), guard=deny, force=True)
    assert result.outcome == "done" and result.kept == ""


async def test_vast_teardown_race_no_such_instance_is_already_gone():
    fake = FakeVast({"7": vast_instance(7)})
    with ProviderServer(fake) as server:
        config = config_for("vastai", "7", server.url)

        def vanish(rec):  # gone between our GET and our DELETE
            fake.instances.pop("7", None)
            return fake(rec)

        server.fake = lambda rec: vanish(rec) if rec.method == "DELETE" else fake(rec)
        result = await run(provider_ops.teardown, config, Clock(), force=True)
    assert (result.outcome, result.message) == ("already", "pod 'box' is already gone")


async def test_lambda_teardown_waits_through_terminating():
    with ProviderServer(FakeLambda({"abc": lambda_instance("abc")})) as server:
        messages: list[str] = []
        result = await run(provider_ops.teardown, config_for("lambda", "abc", server.url), Clock(), messages, force=True)
    assert result.outcome == "done"
    assert "box: the provider says terminating" in messages
    assert "persistent filesystems survive" in result.gone


def test_missing_key_names_the_variable_and_no_value():
    config = config_for("runpod", "pod1", "http://127.0.0.1:9")
    with pytest.raises(ProviderSetupError) as err:
        provider_ops.settings_for(config.pods[0].provider, {}, pod_name="box")
    assert str(err.value) == "pod 'box': set TEST_PROVIDER_KEY to your RunPod API key"
    plain = parse_config("pods:\n  - {name: b, host: h, provider: {type: vastai, id: 1}}\n", "c.yaml")
    with pytest.raises(ProviderSetupError) as err:
        provider_ops.settings_for(plain.pods[0].provider, {})
    assert "set VAST_API_KEY to your Vast.ai API key; or name another variable with api_key_env:" in str(err.value)


def test_server_root_from_config_then_the_providers_own_variable():
    plain = parse_config("pods:\n  - {name: b, host: h, provider: {type: runpod, id: p}}\n", "c.yaml").pods[0].provider
    env = {"RUNPOD_API_KEY": KEY, "RUNPOD_API_BASE_URL": "http://gw.internal:8080"}
    assert provider_ops.settings_for(plain, env).api_url == "http://gw.internal:8080"
    assert provider_ops.settings_for(plain, {"RUNPOD_API_KEY": KEY}).api_url is None  # the official one
    configured = config_for("runpod", "p", "http://cfg.example").pods[0].provider
    assert provider_ops.settings_for(configured, {**ENV, **env}).api_url == "http://cfg.example"
    vast = parse_config("pods:\n  - {name: b, host: h, provider: {type: vast, id: 1}}\n", "c.yaml").pods[0].provider
    assert provider_ops.settings_for(vast, {"VAST_API_KEY": KEY, "VAST_URL": "http://v"}).api_url == "http://v"


async def test_no_provider_or_no_id_is_a_setup_error():
    config = parse_config("pods:\n  - {name: b, host: h}\n  - {name: c, host: h, provider: {type: runpod}}\n", "c.yaml")
    with pytest.raises(ProviderSetupError, match="has no provider: entry"):
        await provider_ops.stop(config, config.pods[0], environ=ENV)
    with pytest.raises(ProviderSetupError, match="gpuctl pods import runpod"):
        await provider_ops.teardown(config, config.pods[1], environ=ENV)


async def test_ssh_pods_power_off_only_where_billing_stops():
    ran: list[str] = []

    async def run_command(command: str) -> None:
        ran.append(command)

    plain = parse_config("pods:\n  - {name: b, host: h, provider: {type: ssh}}\n", "c.yaml")
    with pytest.raises(ActionRefused, match="shutdown_stops_billing: true"):
        await provider_ops.teardown(plain, plain.pods[0], force=True, environ={}, run_command=run_command)
    billed = parse_config("pods:\n  - {name: b, host: h, provider: {type: ssh, shutdown_stops_billing: true}}\n", "c.yaml")
    result = await provider_ops.teardown(billed, billed.pods[0], environ={}, run_command=run_command)
    assert (result.outcome, result.message) == ("done", "pod 'b': power-off sent; the machine is going down")
    assert result.kept == "no sessions are configured on it, so gpuctl knows of no checkpoints to keep"
    assert len(ran) == 1 and "shutdown -h now" in ran[0]
    with pytest.raises(ActionRefused, match="no provider API"):
        await provider_ops.stop(billed, billed.pods[0], environ={})


async def test_the_key_never_shows_in_results_messages_or_errors(runpod):
    server, fake = runpod
    messages: list[str] = []
    config = config_for("runpod", "pod1", server.url)
    results = [await run(provider_ops.stop, config, Clock(), messages),
               await run(provider_ops.teardown, config, Clock(), messages, force=True)]
    texts = messages + [repr(r) for r in results]
    fake.key = "a-different-key"  # now ours is refused: 401
    with pytest.raises(ProviderError) as err:
        await run(provider_ops.stop, config, Clock(), messages)
    texts.append(str(err.value))
    assert all(KEY not in t for t in texts)
