"""Listings a hostile or careless pod cannot cut short or lead out of the workdir.

Issue 19, items 1 and 5, against the real `sshd` fixture: the pod's files are written
by the test straight into a temp workdir.

* A file name that is not UTF-8 (`step_3_\\xff.pt`) used to be decoded strictly by
  asyncssh, which closed the whole connection at the first invalid byte; the listing
  came back cut short and was accepted as complete, so a newer checkpoint listed after
  it vanished and teardown destroyed it. Now every byte comes back (surrogateescape),
  the name round-trips to the same bytes, and a listing without its end marker is an
  error, never a shorter list.
* A directory symlink in the middle of a glob (`ckpts/run1 -> /etc` with
  `ckpts/*/*`) used to list files outside the workdir; such matches are dropped.
"""

from __future__ import annotations

import os
import random
import shlex
import time
from pathlib import Path

import pytest
import yaml

from backends.runner import CommandResult
from sessions.checkpoints.listing import (
    CheckpointListingFailed,
    list_checkpoints,
    listing_command,
    parse_listing,
)
from sessions.config.loader import parse_config
from sessions.link.pod_link import open_transport
from tests.support.pinning import trust

OLD = time.time() - 3600

pytestmark = pytest.mark.usefixtures("isolated_home")


def put(path: Path | bytes, data: bytes = b"x", mtime: float = OLD) -> None:
    """Write a pod file with an mtime well in the past (the freshness rule stays out)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.utime(path, (mtime, mtime))


def config_for(server, tmp_path: Path, workdir: Path, **session) -> Path:
    trust(server)
    entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(workdir), **session}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}))
    return path


async def listed_twice(config_path: Path, **kwargs):
    """List, then list again over the same connection (it must still work)."""
    config = parse_config(config_path.read_text(), config_path)
    pod = config.pod("p")
    async with open_transport(pod, config.defaults) as runner:
        first = await list_checkpoints(runner, pod, "train", **kwargs)
        again = await list_checkpoints(runner, pod, "train", **kwargs)
    return first, again


# ------------------------------------------------------------ item 1: lossless


async def test_a_non_utf8_name_hides_nothing_and_keeps_its_bytes(sshd, tmp_path):
    workdir = tmp_path / "run"
    for step in (100, 200, 400):
        put(workdir / f"step_{step}.pt", b"w" * step)
    odd = os.fsencode(workdir) + b"/step_3_\xff.pt"
    put(odd, b"odd")
    config = config_for(sshd, tmp_path, workdir)
    found, again = await listed_twice(config, settle=0)
    assert [c.step for c in found] == [400, 200, 100, 3]
    assert [c.name for c in again] == [c.name for c in found]  # the connection survived
    weird = found[-1]
    assert os.fsencode(weird.name) == b"step_3_\xff.pt"
    assert os.fsencode(weird.path) == os.fsencode(os.path.realpath(workdir)) + b"/step_3_\xff.pt"
    assert weird.size == 3


async def test_random_byte_names_all_come_back_exactly(sshd, tmp_path):
    """Property-style: seeded random byte strings (anything but `/` and NUL) as names,
    each matched by the glob `c_*`, must all be listed with their exact bytes."""
    rng = random.Random(19)
    workdir = tmp_path / "run"
    workdir.mkdir()
    alphabet = [b for b in range(1, 256) if b != ord("/")]
    created = set()
    while len(created) < 30:
        tail = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        name = b"c_" + tail
        created.add(name)
        put(os.fsencode(workdir) + b"/" + name, name)
    config = config_for(sshd, tmp_path, workdir, checkpoints=["c_*"])
    found, _ = await listed_twice(config, settle=0)
    assert {os.fsencode(c.name) for c in found} == created
    assert all(c.size == len(os.fsencode(c.name)) for c in found)


def test_a_listing_without_its_end_marker_is_an_error_not_a_shorter_list():
    whole = "W\t/w\0T\t100.0\0F\t1\t1.0\tstep_1.pt\0F\t2\t1.0\tstep_2.pt\0E\0"
    assert len(parse_listing(whole).rounds[0][1]) == 2
    with pytest.raises(ValueError, match="cut short"):
        parse_listing(whole[: whole.index("E\0")])


class _CutShort:
    """A runner whose command output stops mid-listing, as a dropped channel leaves it."""

    async def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        return CommandResult(0, "W\t/w\0T\t100.0\0F\t1\t1.0\tstep_1.pt\0", "")


async def test_list_checkpoints_refuses_a_cut_short_listing(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [{"name": "p", "host": "example.invalid",
                                              "sessions": [{"name": "train", "workdir": "/w"}]}]}))
    config = parse_config(path.read_text(), path)
    with pytest.raises(CheckpointListingFailed, match="cut short"):
        await list_checkpoints(_CutShort(), config.pod("p"), "train", settle=0)


# ---------------------------------------------------- item 5: workdir containment


async def test_a_linked_folder_mid_glob_does_not_lead_out_of_the_workdir(sshd, tmp_path):
    workdir = tmp_path / "run"
    outside = tmp_path / "elsewhere"
    put(outside / "shadow", b"secret")
    put(outside / "step_999.pt", b"not ours")
    put(workdir / "ckpts" / "run0" / "step_5.pt", b"5" * 5)
    put(workdir / "real" / "step_7.pt", b"7" * 7)
    (workdir / "ckpts" / "run1").symlink_to(outside)            # ckpts/run1 -> elsewhere
    (workdir / "ckpts" / "inside").symlink_to(workdir / "real")  # a link that stays inside
    (workdir / "out").symlink_to(outside)                        # `*/step_*.pt` of the defaults
    config = config_for(sshd, tmp_path, workdir, checkpoints=["ckpts/*/*"])
    found, _ = await listed_twice(config, settle=0)
    assert sorted(c.name for c in found) == ["ckpts/inside/step_7.pt", "ckpts/run0/step_5.pt"]
    real = os.path.realpath(workdir)
    assert all(c.path.startswith(real + "/") for c in found)
    defaults = config_for(sshd, tmp_path, workdir)
    newest, _ = await listed_twice(defaults, settle=0)
    assert "out/step_999.pt" not in [c.name for c in newest]


async def test_containment_holds_for_a_workdir_reached_through_a_link(sshd, tmp_path):
    """The workdir itself may be a symlink (`/workspace -> /mnt/vol`): what counts is
    its physical path, so its own files are never taken for outsiders."""
    real = tmp_path / "vol" / "run"
    put(real / "sub" / "step_1.pt", b"1")
    link = tmp_path / "workspace"
    link.symlink_to(real)
    config = config_for(sshd, tmp_path, link, checkpoints=["*/*.pt"])
    found, _ = await listed_twice(config, settle=0)
    assert [c.name for c in found] == ["sub/step_1.pt"]


# ------------------------------------------- the same through a PTY shell (RunPod)


@pytest.fixture
async def shell_server(tmp_path):
    from tests.support.shell_only_sshd import ShellOnlyServer

    home = tmp_path / "pod-home"
    home.mkdir()
    async with ShellOnlyServer(home) as server:
        yield server


@pytest.mark.requires_tools("bash")
async def test_a_non_utf8_name_round_trips_through_a_pty_shell(shell_server):
    """A shell-only proxy carries text: the name's bytes must come back, and go out
    again as the same bytes when the pod is asked for that very file."""
    import asyncssh

    from backends.pty_shell import PtyShell
    from sessions.checkpoints.listing import judge

    put(os.fsencode(shell_server.home) + b"/step_3_\xff.pt", b"odd")
    put(shell_server.home / "step_400.pt", b"w" * 400)
    async with await asyncssh.connect("127.0.0.1", shell_server.port, username="pod1-64410abc",
                                      known_hosts=None, client_keys=None, agent_path=None,
                                      password=None, config=None) as conn:
        shell = await PtyShell.open(conn)
        result = await shell.run(listing_command(str(shell_server.home), ["step_*.pt"]))
        found = judge(parse_listing(result.stdout))
        odd = found[-1]
        assert [c.step for c in found] == [400, 3]
        assert os.fsencode(odd.name) == b"step_3_\xff.pt"
        back = await shell.run("cat -- " + shlex.quote(odd.path))
        assert (back.exit_status, back.stdout) == (0, "odd")


def test_the_checkpoints_command_shows_a_non_utf8_name_escaped(sshd, tmp_path, capsys):
    """The CLI prints it visibly (`\\xff`), and JSON keeps it losslessly (`\\udcff`)."""
    import json

    from tui.cli import main

    workdir = tmp_path / "run"
    put(workdir / "step_400.pt", b"w" * 400)
    put(os.fsencode(workdir) + b"/step_3_\xff.pt", b"odd")
    config = config_for(sshd, tmp_path, workdir)
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    table = capsys.readouterr().out
    assert "step_400.pt" in table and "step_3_\\xff.pt" in table
    assert main(["--config", str(config), "checkpoints", "p", "train", "--json"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)["checkpoints"]]
    assert [os.fsencode(n) for n in names] == [b"step_400.pt", b"step_3_\xff.pt"]


@pytest.mark.parametrize("method", ["ssh", "stream", "sftp"])
async def test_a_checkpoint_named_with_a_non_utf8_byte_downloads_verified(sshd, tmp_path, method):
    """The name's bytes reach the pod intact on every transfer path (the asyncssh
    stream sends the command as bytes, SFTP paths use surrogateescape, ssh's argv is
    encoded by the OS), and the local copy carries the same bytes in its name."""
    from sessions.checkpoints.download import download_checkpoint

    workdir = tmp_path / "run"
    put(os.fsencode(workdir) + b"/step_3_\xff.pt", b"odd" * 1000)
    config_path = config_for(sshd, tmp_path, workdir)
    config = parse_config(config_path.read_text(), config_path)
    dest = tmp_path / "dest"
    result = await download_checkpoint(config, "p", "train", os.fsdecode(b"step_3_\xff.pt"), dest=dest,
                                       method=method)
    assert os.fsencode(result.local_path).endswith(b"step_3_\xff.pt")
    assert Path(result.local_path).read_bytes() == b"odd" * 1000
