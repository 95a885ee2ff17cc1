"""A pod that is not running is said to be so by every action (QA of issue 12, item 2).

`gpuctl checkpoints|download|upload|logs|check|doctor`, the TUI's `r` and the teardown
dialog all reach a pod through `Fleet.borrow`; when the pod is stopped they used to
print the SSH error that followed ("connection refused by 127.0.0.1:45197 (is sshd
running...)") while `status` said `stopped: runpod says the instance is stopped`.
Real parts: the RunPod stand-in, a real sshd (stopped, as the instance is), the Fleet.
"""

from __future__ import annotations

import pytest

from sessions.checkpoints import index as checkpoint_index
from sessions.checkpoints.teardown_guard import NOT_CHECKED
from sessions.errors import PodNotRunning, SshFailure
from sessions.fleet.facade import Fleet
from tests.support.provider_server import KEY, FakeRunPod, ProviderServer, runpod_pod
from tests.test_lifecycle_views import config_for

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux", "ssh"), pytest.mark.usefixtures("isolated_home")]


async def test_a_stopped_pods_actions_say_it_is_stopped_not_connection_refused(sshd_fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    with ProviderServer(FakeRunPod({"pod1": runpod_pod("pod1", "EXITED")}, settle=0)) as server:
        config = config_for(sshd_fresh, tmp_path, "runpod", server.url, "pod1")
        pod = config.pod("p")
        copy = tmp_path / "ckpt-400.pt"
        copy.write_bytes(b"weights")
        checkpoint_index.record(checkpoint_index.IndexEntry(
            host=checkpoint_index.host_identity(pod, config.defaults), remote_path="/w/out/ckpt-400.pt", size=7,
            mtime=1.0e9, local_path=str(copy), sha256="ab" * 32, session="train",
            local_stamp=checkpoint_index.local_stamp(copy) or ""))
        sshd_fresh.stop()  # the instance is stopped: nothing answers on its port
        async with Fleet.for_command(config, ["p"]) as fleet:
            with pytest.raises(PodNotRunning) as listing:
                await fleet.list_checkpoints("p", "train")
            with pytest.raises(PodNotRunning) as logs:
                async for _chunk in fleet.logs("p", "/w/train.log", lines=10, follow=False):
                    pass
            ok, note = await fleet.guard_for()(pod)
    said = listing.value.message
    assert said == "p is stopped (runpod says the instance is stopped (EXITED)); start it, then try again", said
    assert (logs.value.message, listing.value.state) == (said, "stopped")
    # the teardown dialog: the pod's state and what is verified here, no verdict on the pod's side
    assert not ok and note == (f"{NOT_CHECKED}it is stopped (runpod says the instance is stopped (EXITED)); "
                               f"verified here: session train: ckpt-400.pt at {copy}")


async def test_a_running_pod_that_refuses_keeps_its_ssh_error(sshd_fresh, tmp_path, monkeypatch):
    """The provider says it runs: sshd down is an SSH problem, said as one."""
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    with ProviderServer(FakeRunPod({"pod1": runpod_pod("pod1")}, settle=0)) as server:
        config = config_for(sshd_fresh, tmp_path, "runpod", server.url, "pod1")
        sshd_fresh.stop()
        async with Fleet.for_command(config, ["p"]) as fleet:
            with pytest.raises(SshFailure) as failed:
                await fleet.list_checkpoints("p", "train")
    assert not isinstance(failed.value, PodNotRunning) and "refused" in failed.value.message
