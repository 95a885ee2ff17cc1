"""Random byte strings as pod file names, through listing, download and resume.

A pod's file names are whatever bytes its programs wrote. Each seeded case puts one
checkpoint named `step_<N>_<random bytes>.pt` (any byte but `/` and NUL: newlines,
quotes, `$(`, control characters, invalid UTF-8) on the real sshd fixture, then checks
that gpuctl lists it with its exact bytes as the newest, downloads it verified under
the same bytes, and resumes a session whose program receives exactly that path.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import yaml

from sessions.checkpoints.listing import list_checkpoints
from sessions.config.loader import parse_config
from sessions.checkpoints.download import download_checkpoint
from sessions.link.pod_link import open_transport
from sessions.checkpoints.resume import resume
from tests.support.pinning import trust
from tests.test_template_injection import received, recorder, wait_for

pytestmark = [pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux"), pytest.mark.usefixtures("isolated_home")]

SPICE = [b"\n", b"\r", b"'", b'"', b"$(touch PWNED)", b"`touch PWNED`", b";", b" ", b"\\", b"\x1b]52;c;eA==\x07",
         b"\xff", b"\xc3", b"*", b"?", b"[", b"-", b"%", b"#", b"{checkpoint}"]


def random_name(rng: random.Random, step: int) -> bytes:
    """A checkpoint file name: step-named (so it is the newest), the rest hostile."""
    middle = b""
    while len(middle) < 12:
        middle += rng.choice(SPICE) if rng.random() < 0.5 else bytes([rng.choice([b for b in range(1, 256)
                                                                                  if b != 0x2F])])
    return b"step_%d_" % step + middle + b".pt"


@pytest.fixture
def session_name(sshd):
    yield "randnames"
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    env["TMUX_TMPDIR"] = str(sshd.tmux_tmpdir)
    subprocess.run(["tmux", "kill-session", "-t", "=randnames"], env=env, capture_output=True, timeout=10)


async def test_random_byte_names_list_download_and_resume_exactly(sshd, tmp_path, session_name):
    rng = random.Random(1919)
    workdir = tmp_path / "run"
    workdir.mkdir()
    recorder(workdir)
    trust(sshd)
    session = {"name": session_name, "command": "true", "workdir": str(workdir), "resume": "./rec {checkpoint}",
               "checkpoints": ["step_*.pt"]}
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({"pods": [sshd.pod_entry("p", sessions=[session])]}))
    config = parse_config(config_path.read_text(), config_path)
    pod = config.pod("p")
    physical = os.fsencode(os.path.realpath(workdir))
    old = time.time() - 3600
    async with open_transport(pod, config.defaults) as runner:
        for case in range(10):
            raw = random_name(rng, 100 + case)
            path = physical + b"/" + raw
            with open(path, "wb") as fh:
                fh.write(raw * 3)
            os.utime(path, (old + case, old + case))

            found = await list_checkpoints(runner, pod, session_name, settle=0.0)
            assert os.fsencode(found[0].name) == raw, (case, raw)
            assert len(found) == case + 1

            method = ("ssh", "stream", "sftp")[case % 3]
            got = await download_checkpoint(config, pod, session_name, found[0].name, dest=tmp_path / "dest",
                                            method=method, runner=runner)
            local = Path(got.local_path)
            assert os.fsencode(local.name) == raw and local.read_bytes() == raw * 3, (case, method)

            (workdir / "received").unlink(missing_ok=True)
            result = await resume(runner, pod, session_name, checkpoints=found)
            assert os.fsencode(result.checkpoint.path) == path
            assert [os.fsencode(a) for a in await wait_for(workdir)] == [path], (case, raw)
    assert not (workdir / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    assert received(workdir) is not None
