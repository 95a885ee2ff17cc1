"""Pod-controlled text never runs as code through `resume:` or `notify` command templates.

The review's matrix in small: four payloads that break out of quotes or start a
command substitution, placed by four templates the way people write them. Each
rendered command really runs (`sh -c` in a temp dir; the Notifier's own shell; the
launch wrapper in tmux behind a real sshd), and the test checks both that no payload
ran (no PWNED file) and that the program got the exact text. A template where safety
cannot be guaranteed (`bash -c '... {checkpoint}'`) must be a config error instead,
and the way that error suggests writing it must work.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sessions.config.loader import parse_config
from sessions.events import EventKind, WatchEvent
from sessions.watch.notify import Notifier
from sessions.link.pod_link import open_transport
from sessions.config.policy_model import NotifyTarget
from sessions.checkpoints.resume import NoResumeTemplate, fill_template, resumable, resume
from sessions.config.shell_template import (
    NOTIFY_PLACEHOLDERS,
    RESUME_PLACEHOLDERS,
    TemplateError,
    render,
)
from tests.support.pinning import trust
from tests.support.sshd import SshdServer
from tui.cli import main

PAYLOADS = ['step_6";touch PWNED;"x.pt', "$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '"]

# A program that records its argv, one NUL-separated file per run: what "the program
# received the exact name" is checked against.
RECORDER = f"""#!{sys.executable}
import sys
open("received", "wb").write(b"\\0".join(a.encode("utf-8", "surrogateescape") for a in sys.argv[1:]))
"""


def recorder(where: Path) -> None:
    path = where / "rec"
    path.write_text(RECORDER)
    path.chmod(0o755)


def received(where: Path) -> list[str] | None:
    try:
        return (where / "received").read_bytes().decode("utf-8", "surrogateescape").split("\0")
    except FileNotFoundError:
        return None


# (template, what the recorder receives for the value v); {x} is the placeholder.
SAFE = [
    ("./rec --ckpt={x}", lambda v: [f"--ckpt={v}"]),
    ('./rec --ckpt="{x}/model.pt"', lambda v: [f"--ckpt={v}/model.pt"]),
    ('./rec "$(echo {x})"', lambda v: [v]),
    ('echo "$(./rec {x})"', lambda v: [v]),
]
UNSAFE = ["bash -c './rec {x}'", "sh -c \"./rec {x}\"", "eval ./rec {x}", "./rec `echo {x}`", "ssh h ./rec {x}",
          "python3 -u -c \"print('{x}')\"", "docker exec box bash -lc \"./rec {x}\""]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("template, expected", SAFE)
def test_resume_template_passes_a_hostile_checkpoint_name_as_data(tmp_path, template, expected, payload):
    recorder(tmp_path)
    path = f"/ckpts/{payload}"
    command = fill_template(template.replace("{x}", "{checkpoint}"), path)
    subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True, timeout=30)
    assert not (tmp_path / "PWNED").exists()
    assert received(tmp_path) == expected(path)


def test_random_hostile_names_arrive_intact_through_every_safe_placement(tmp_path):
    """A bounded property test: names drawn from shell metacharacters, control
    characters and non-UTF-8 bytes (as Python holds them: surrogateescape). The
    recorder here is sh's own printf, so 120 runs take well under a second."""
    alphabet = list("\"'`$(){};|&<>*?[]!#~=%\\ \t\nab/.") + ["\udcff", "\udc80", "\x1b", "é"]
    rng = random.Random(19)
    rec = "rec() { printf '%s\\0' \"$@\" > received; }; "
    templates = [("rec --ckpt={checkpoint}", lambda v: [f"--ckpt={v}"]),
                 ('rec --ckpt="{checkpoint}/model.pt"', lambda v: [f"--ckpt={v}/model.pt"]),
                 ("rec \"$(printf '%s' {checkpoint})\"", lambda v: [v.rstrip("\n")])]
    for _ in range(40):
        value = "/c/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        for template, expected in templates:
            subprocess.run(["sh", "-c", rec + fill_template(template, value)], cwd=tmp_path, check=True, timeout=30)
            assert received(tmp_path) == [*expected(value), ""], (template, value)
    assert [p.name for p in tmp_path.iterdir()] == ["received"]


@pytest.mark.parametrize("template", UNSAFE)
def test_a_placeholder_where_it_could_run_as_code_is_refused(template):
    for name, names in (("checkpoint", RESUME_PLACEHOLDERS), ("message", NOTIFY_PLACEHOLDERS)):
        with pytest.raises(TemplateError, match=rf"^\{{{name}\}} "):
            render(template.replace("{x}", f"{{{name}}}"), names)


def test_an_option_of_the_script_itself_is_not_taken_for_code():
    """`-c` after a script is the script's option (often --checkpoint), not `python -c`."""
    assert render("python train.py -c {checkpoint}", RESUME_PLACEHOLDERS) == \
        'python train.py -c "$GPUCTL_CHECKPOINT"'
    assert render('echo -e "{message}: done"', NOTIFY_PLACEHOLDERS) == 'echo -e "${GPUCTL_MESSAGE}: done"'


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_suggested_bash_c_form_reads_the_exported_value(tmp_path, payload):
    """What the refusal tells people to write: the inner shell reads the variable itself."""
    recorder(tmp_path)
    command = fill_template("bash -c './rec \"$GPUCTL_CHECKPOINT\"'", f"/c/{payload}")
    subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True, timeout=30)
    assert not (tmp_path / "PWNED").exists()
    assert received(tmp_path) == [f"/c/{payload}"]


def test_config_check_names_the_line_of_a_template_it_refuses(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(
        "pods:\n"
        "  - name: p\n"
        "    host: 127.0.0.1\n"
        "    sessions:\n"
        "      - name: train\n"
        "        command: python train.py\n"
        "        resume: \"bash -c 'python train.py {checkpoint}'\"\n"
        "policies:\n"
        "  notify: [{command: \"sh -c 'notify-send {message}'\"}]\n")
    assert main(["--config", str(config), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert f"{config}:7:" in err and "resume: {checkpoint} cannot stand inside '…'" in err
    assert f"{config}:9:" in err and "command: {message} cannot stand inside '…'" in err
    assert "Traceback" not in err
    config.write_text(config.read_text()
                      .replace("'python train.py {checkpoint}'", "'python train.py \\\"$GPUCTL_CHECKPOINT\\\"'")
                      .replace("'notify-send {message}'", "'notify-send \\\"$GPUCTL_MESSAGE\\\"'"))
    assert main(["--config", str(config), "config", "check"]) == 0
    parsed = parse_config(config.read_text(), config)
    resumable(parsed.pod("p"), "train")  # reading $GPUCTL_CHECKPOINT counts as using it


def test_resume_refuses_an_unsafe_template_before_touching_the_pod(tmp_path):
    config = parse_config(yaml.safe_dump({"pods": [{"name": "p", "host": "127.0.0.1", "sessions": [
        {"name": "t", "command": "x", "resume": "x"}]}]}), tmp_path / "c.yaml")
    pod = config.pod("p")
    session = replace(pod.session("t"), resume="bash -c 'python train.py {checkpoint}'")
    with pytest.raises(NoResumeTemplate, match=r"cannot be used: \{checkpoint\} cannot stand inside"):
        resumable(pod, session)


# ------------------------------------------------------------------------ notify


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("template, expected", SAFE)
async def test_notify_command_passes_a_hostile_message_as_data(tmp_path, monkeypatch, template, expected, payload):
    monkeypatch.chdir(tmp_path)  # notify commands run in gpuctl's directory
    recorder(tmp_path)
    errors: list[str] = []
    notifier = Notifier([NotifyTarget("command", template.replace("{x}", "{message}"))], on_error=errors.append)
    await notifier.send(WatchEvent(EventKind.ALERT, "pod-a", payload, "train", ts=1.0))
    await notifier.aclose()
    assert errors == []
    assert not (tmp_path / "PWNED").exists()
    assert received(tmp_path) == expected(payload)


@pytest.mark.parametrize("template", UNSAFE)
async def test_notify_reports_an_unsafe_template_and_runs_nothing(tmp_path, monkeypatch, template):
    monkeypatch.chdir(tmp_path)
    recorder(tmp_path)
    errors: list[str] = []
    notifier = Notifier([NotifyTarget("command", template.replace("{x}", "{message}"), line=4)],
                        on_error=errors.append)
    await notifier.send(WatchEvent(EventKind.ALERT, "pod-a", PAYLOADS[1], "train", ts=1.0))
    await notifier.aclose()
    assert len(errors) == 1 and "(config line 4): {message} " in errors[0]
    assert received(tmp_path) is None and not (tmp_path / "PWNED").exists()


async def test_notify_puts_every_value_in_the_environment_including_ts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorder(tmp_path)
    errors: list[str] = []
    notifier = Notifier([NotifyTarget("command", './rec "$GPUCTL_TS" {ts} "{kind}:{pod}/{session}"')],
                        on_error=errors.append)
    await notifier.send(WatchEvent(EventKind.ALERT, "pod-a", "m", "train", ts=1_780_000_000.25))
    await notifier.aclose()
    assert errors == []
    assert received(tmp_path) == ["1780000000.25", "1780000000.25", "alert:pod-a/train"]


# ------------------------------------------------- end to end: sshd, tmux, launch wrapper


async def wait_for(where: Path, limit: float = 15.0) -> list[str]:
    deadline = time.monotonic() + limit
    while (got := received(where)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the relaunched command never wrote {where / 'received'}")
        await asyncio.sleep(0.02)
    return got


@pytest.fixture
def inject_session(sshd: SshdServer):
    """The tmux session name the end-to-end test uses, killed afterwards."""
    yield "inject"
    env = {**os.environ, "TMUX_TMPDIR": str(sshd.tmux_tmpdir)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "kill-session", "-t", "=inject"], env=env, capture_output=True, timeout=10, check=False)


@pytest.mark.requires_tools("sshd", "ssh-keygen", "tmux")
@pytest.mark.usefixtures("isolated_home")
@pytest.mark.parametrize("raw", [PAYLOADS[0].encode(), b"step_8_\xff$(touch PWNED).pt"])
async def test_resume_over_ssh_with_a_hostile_checkpoint_file_name(sshd: SshdServer, tmp_path, inject_session, raw):
    workdir = tmp_path / "run"
    workdir.mkdir()
    recorder(workdir)
    name = os.fsdecode(raw)  # a step checkpoint by its name (step_*.pt), not valid UTF-8 in the second
    (workdir / name).write_bytes(b"weights")
    old = time.time() - 3600
    os.utime(workdir / name, (old, old))
    trust(sshd)
    template = './rec "--ckpt={checkpoint}" "$(echo {checkpoint})"'
    session = {"name": inject_session, "command": "true", "workdir": str(workdir), "resume": template}
    config = parse_config(yaml.safe_dump({"pods": [sshd.pod_entry("p", sessions=[session])]}), tmp_path / "c.yaml")
    pod = config.pod("p")
    async with open_transport(pod, config.defaults) as runner:
        result = await resume(runner, pod, inject_session)
    args = await wait_for(workdir)
    path = os.path.realpath(workdir) + "/" + name
    assert result.checkpoint.name == name
    assert args == [f"--ckpt={path}", path]
    assert not (workdir / "PWNED").exists()
