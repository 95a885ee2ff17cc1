"""Finding checkpoints: names, order, the `writing` rules, and the listing over real sshd.

The pod is the shared `sshd` fixture; its workdir is a temp dir of this test, so the
test writes the "pod's" files directly. mtimes are set explicitly (os.utime) so the
freshness rule is decided by the test, never by how fast the machine is.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from sessions.checkpoints.listing import (
    COMPLETE,
    DEFAULT_PATTERNS,
    DIR,
    FILE,
    WRITING,
    Checkpoint,
    UnsafeName,
    check_relative,
    find_by_name,
    judge,
    list_checkpoints,
    listing_command,
    parse_folder,
    parse_listing,
    patterns_for,
    sort_newest_first,
    step_of,
)
from sessions.config.loader import parse_config
from sessions.config.model import SessionConfig
from sessions.link.pod_link import open_transport
from tui.cli import main
from tests.support.pinning import trust

OLD = time.time() - 3600

pytestmark = pytest.mark.usefixtures("isolated_home")


def write(path: Path, data: bytes = b"x", mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def age_tree(root: Path, mtime: float = OLD) -> None:
    for p in [root, *root.rglob("*")]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)


def config_for(server, tmp_path: Path, workdir: Path, **session) -> Path:
    trust(server)
    entry = server.pod_entry("p", sessions=[{"name": "train", "workdir": str(workdir), **session}])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pods": [entry]}))
    return path


async def listed(config_path: Path, **kwargs) -> list[Checkpoint]:
    config = parse_config(config_path.read_text(), config_path)
    pod = config.pod("p")
    async with open_transport(pod, config.defaults) as runner:
        return await list_checkpoints(runner, pod, "train", **kwargs)


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("name, step", [
    ("checkpoint-500", 500),
    ("output/checkpoint-1200", 1200),
    ("global_step64", 64),
    ("step_900.pt", 900),
    ("ckpt/step-12.pt", 12),
    ("epoch=2-step=1500.ckpt", 1500),
    ("model-step=77.ckpt", 77),
    ("epoch_3.pt", None),
    ("best.pt", None),
    ("final.pt", None),
    ("model-00001-of-00004.safetensors", None),
    ("laststep.pt", None),
])
def test_step_from_the_name(name, step):
    assert step_of(name) == step


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/etc/passwd", "", "a\0b"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UnsafeName):
        check_relative(name)


def test_unsafe_globs_in_config_are_refused_and_defaults_cover_the_frameworks():
    with pytest.raises(UnsafeName, match=r"'\.\.'"):
        patterns_for(SessionConfig("t", checkpoints=("../other/*.pt",)))
    with pytest.raises(UnsafeName, match="absolute"):
        patterns_for(SessionConfig("t", checkpoints=("/data/*.pt",)))
    defaults = patterns_for(SessionConfig("t"))
    assert defaults == DEFAULT_PATTERNS
    for wanted in ("checkpoint-*", "global_step*", "step_*.pt", "epoch_*.pt", "*step=*.ckpt",
                   "best.pt", "final.pt", "*.safetensors", "*/checkpoint-*"):
        assert wanted in defaults


def cp(name, step=None, mtime=0.0, state=COMPLETE):
    return Checkpoint(name, "/w/" + name, FILE, step, 1, mtime, state)


def test_order_is_step_first_then_mtime():
    items = [cp("best.pt", None, 500), cp("step_100.pt", 100, 100), cp("step_900.pt", 900, 50),
             cp("final.pt", None, 600), cp("step_900b.pt", 900, 60)]
    assert [c.name for c in sort_newest_first(items)] == [
        "step_900b.pt", "step_900.pt", "step_100.pt", "final.pt", "best.pt"]


def test_find_by_name_takes_the_full_name_or_a_unique_basename():
    items = [cp("a/best.pt"), cp("b/best.pt"), cp("out/step_5.pt", 5)]
    assert find_by_name(items, "out/step_5.pt").name == "out/step_5.pt"
    assert find_by_name(items, "step_5.pt").name == "out/step_5.pt"
    assert find_by_name(items, "./out/step_5.pt/").name == "out/step_5.pt"
    assert find_by_name(items, "best.pt") is None  # ambiguous


def listing(*rounds, root="/w") -> str:
    """Build listing output: each round is (pod clock, [records without the NUL])."""
    out = f"W\t{root}\0"
    for now, records in rounds:
        out += f"T\t{now}\0" + "".join(r + "\0" for r in records)
    return out + "E\0"


def test_judge_marks_markers_changes_and_fresh_files():
    first = ["F\t10\t100.0\tstep_1.pt", "F\t10\t100.0\tstep_2.pt", "F\t10\t100.0\tgone.pt",
             "F\t5\t300.0\tfuture.pt", "F\t1\t100.0\t./dot.pt", "F\t5\t199.5\tfresh.pt",
             "D\t30\t100.0\t3\t0\t\tcheckpoint-5", "D\t30\t100.0\t3\t1\t\tcheckpoint-4",
             "D\t8\t100.0\t2\t0\tglobal_step7\tds/global_step8", "D\t8\t100.0\t2\t0\tglobal_step8\tds/global_step7"]
    second = ["F\t10\t100.0\tstep_1.pt", "F\t20\t100.5\tstep_2.pt", "F\t5\t199.5\tfresh.pt",
              "F\t5\t300.0\tfuture.pt", "F\t5\t100.0\tnew.pt",
              "D\t30\t100.0\t3\t0\t\tcheckpoint-5", "D\t30\t100.0\t3\t1\t\tcheckpoint-4",
              "D\t30\t100.0\t3\t1\t\tcheckpoint-4/model.safetensors",
              "F\t1\t100.0\tcheckpoint-4/model.safetensors",
              "D\t8\t100.0\t2\t0\tglobal_step7\tds/global_step8", "D\t8\t100.0\t2\t0\tglobal_step8\tds/global_step7",
              "F\t1\t100.0\t../escape.pt", "F\t1\t100.0\t./dot.pt"]
    got = {c.name: c for c in judge(parse_listing(listing((199.0, first), (200.0, second))), fresh=2.0)}
    assert set(got) == {"step_1.pt", "step_2.pt", "fresh.pt", "future.pt", "new.pt", "checkpoint-5",
                        "checkpoint-4", "ds/global_step8", "ds/global_step7", "dot.pt"}
    states = {n: c.state for n, c in got.items()}
    assert states == {
        "step_1.pt": COMPLETE,
        "step_2.pt": WRITING,          # grew between the two listings
        "fresh.pt": WRITING,           # modified 0.5 s before the listing
        "future.pt": COMPLETE,         # mtime ahead of the pod's clock: skew, not evidence
        "new.pt": WRITING,             # appeared during the settle interval
        "checkpoint-5": WRITING,       # Hugging Face folder without trainer_state.json
        "checkpoint-4": COMPLETE,
        "ds/global_step8": WRITING,    # DeepSpeed `latest` still names step 7
        "ds/global_step7": COMPLETE,
        "dot.pt": COMPLETE,
    }
    c4 = got["checkpoint-4"]
    assert (c4.kind, c4.path, c4.size, c4.files, c4.step, c4.age_s) == (DIR, "/w/checkpoint-4", 30, 3, 4, 100.0)
    assert got["dot.pt"].path == "/w/dot.pt"


def test_judge_against_a_previous_listing_without_waiting():
    before = judge(parse_listing(listing((150.0, ["F\t10\t100.0\tstep_1.pt", "F\t10\t100.0\tstep_2.pt"]))))
    assert [c.state for c in before] == [COMPLETE, COMPLETE]
    after = judge(parse_listing(listing((160.0, ["F\t10\t100.0\tstep_1.pt", "F\t11\t101.0\tstep_2.pt",
                                                 "F\t1\t100.0\tstep_3.pt"]))), previous=before)
    assert {c.name: c.state for c in after} == {"step_1.pt": COMPLETE, "step_2.pt": WRITING, "step_3.pt": COMPLETE}


def test_parse_folder_refuses_traversal_absolute_names_and_links_outside():
    ok = "R\t/w/ck\0f\t3\ta\0f\t4\tsub/b\0l\tf\t3\t/w/ck/a\tlink-a\0l\td\t0\t/w/ck/sub\tlink-sub\0o\tfifo\0"
    files = parse_folder(ok, "ck")
    assert [(f.rel, f.size) for f in files] == [("a", 3), ("link-a", 3), ("sub/b", 4)]
    for bad, why in [
        ("R\t/w/ck\0f\t1\t../x\0", "'..'"),
        ("R\t/w/ck\0f\t1\t/etc/passwd\0", "absolute"),
        ("R\t/w/ck\0l\tf\t9\t/etc/passwd\tpw\0", "outside"),
        ("R\t/w/ck\0l\tf\t9\t/w/ckevil/x\tsneaky\0", "outside"),
    ]:
        with pytest.raises(UnsafeName, match=why):
            parse_folder(bad, "ck")


def test_listing_command_quotes_everything_and_keeps_tilde():
    command = listing_command("~/run dir", ["it's *.pt", "$(reboot)"], 0.25)
    assert " ~/'run dir' 0.250 " in command
    assert "'it'\"'\"'s *.pt'" in command and "'$(reboot)'" in command


# --------------------------------------------------------------- over real sshd


def make_run(workdir: Path) -> None:
    write(workdir / "step_100.pt", b"a" * 100)
    write(workdir / "step_900.pt", b"b" * 900)
    write(workdir / "best.pt", b"c" * 10, mtime=OLD + 50)
    write(workdir / "lightning_logs" / "version_0" / "checkpoints" / "epoch=1-step=300.ckpt", b"d" * 30)
    hf = workdir / "output" / "checkpoint-500"
    write(hf / "model.safetensors", b"e" * 1000)
    write(hf / "optimizer.pt", b"f" * 500)
    write(hf / "trainer_state.json", b"{}")
    unfinished = workdir / "output" / "checkpoint-600"
    write(unfinished / "model.safetensors", b"g" * 1000)
    write(workdir / "output" / "model.safetensors", b"h" * 7, mtime=OLD + 60)
    write(workdir / "step_3 it's\t\"odd\".pt", b"i" * 3)
    (workdir / "latest.pt").symlink_to("step_900.pt")
    write(workdir / "notes.txt", b"not a checkpoint")
    age_tree(workdir / "output")
    os.utime(workdir / "output" / "model.safetensors", (OLD + 60, OLD + 60))


async def test_listing_finds_the_default_layouts_over_sshd(sshd, tmp_path):
    workdir = tmp_path / "run"
    make_run(workdir)
    config = config_for(sshd, tmp_path, workdir)
    found = await listed(config, settle=0.05)
    assert [(c.name, c.kind, c.step, c.size, c.state) for c in found] == [
        ("step_900.pt", FILE, 900, 900, COMPLETE),
        ("output/checkpoint-600", DIR, 600, 1000, WRITING),  # no trainer_state.json yet
        ("output/checkpoint-500", DIR, 500, 1502, COMPLETE),
        ("lightning_logs/version_0/checkpoints/epoch=1-step=300.ckpt", FILE, 300, 30, COMPLETE),
        ("step_100.pt", FILE, 100, 100, COMPLETE),
        ("step_3 it's\t\"odd\".pt", FILE, 3, 3, COMPLETE),
        ("output/model.safetensors", FILE, None, 7, COMPLETE),
        ("best.pt", FILE, None, 10, COMPLETE),
    ]
    real = os.path.realpath(workdir)
    assert found[0].path == f"{real}/step_900.pt"
    assert found[0].mtime == pytest.approx(OLD, abs=1e-3)
    assert found[0].age_s == pytest.approx(time.time() - OLD, abs=30)  # OLD is set at collection, not now
    assert found[2].files == 3


async def test_configured_globs_replace_the_defaults(sshd, tmp_path):
    workdir = tmp_path / "run"
    write(workdir / "ckpt" / "iter_0042.bin", b"x" * 42)
    write(workdir / "step_1.pt")
    config = config_for(sshd, tmp_path, workdir, checkpoints=["ckpt/iter_*.bin"])
    assert [(c.name, c.size) for c in await listed(config, settle=0)] == [("ckpt/iter_0042.bin", 42)]


async def test_a_checkpoint_that_grows_during_listing_is_writing(sshd, tmp_path):
    workdir = tmp_path / "run"
    write(workdir / "step_1.pt", b"old")
    growing = write(workdir / "step_2.pt", b"")
    config = config_for(sshd, tmp_path, workdir)
    stop = threading.Event()

    def grow() -> None:
        with open(growing, "ab", buffering=0) as fh:
            while not stop.is_set():
                fh.write(b"z" * 4096)
                os.utime(growing, (OLD, OLD))  # only the size moves: the freshness rule stays out
                stop.wait(0.005)

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        found = await listed(config, settle=0.3)
    finally:
        stop.set()
        writer.join()
    assert {c.name: c.state for c in found} == {"step_2.pt": WRITING, "step_1.pt": COMPLETE}


async def test_a_just_modified_file_is_writing_and_an_earlier_listing_can_decide(sshd, tmp_path):
    workdir = tmp_path / "run"
    write(workdir / "step_1.pt", b"1")
    write(workdir / "step_2.pt", b"2", mtime=time.time())  # written now, by the pod's clock
    config = config_for(sshd, tmp_path, workdir)
    first = await listed(config, settle=0)
    assert {c.name: c.state for c in first} == {"step_2.pt": WRITING, "step_1.pt": COMPLETE}
    write(workdir / "step_2.pt", b"2")
    with open(workdir / "step_1.pt", "ab") as fh:  # grows, then is dated back again
        fh.write(b"more")
    os.utime(workdir / "step_1.pt", (OLD, OLD))
    again = await listed(config, previous=first)
    assert {c.name: c.state for c in again} == {"step_2.pt": WRITING, "step_1.pt": WRITING}
    third = await listed(config, previous=again)
    assert {c.name: c.state for c in third} == {"step_2.pt": COMPLETE, "step_1.pt": COMPLETE}


def test_checkpoints_command_json_and_table(sshd, tmp_path, capsys):
    workdir = tmp_path / "run"
    make_run(workdir)
    config = config_for(sshd, tmp_path, workdir)
    assert main(["--config", str(config), "checkpoints", "p", "train", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["pod"], data["session"]) == ("p", "train")
    first = data["checkpoints"][0]
    assert set(first) == {"name", "path", "kind", "step", "size", "mtime", "age_s", "state", "verified_local"}
    assert (first["name"], first["kind"], first["step"], first["state"], first["verified_local"]) == (
        "step_900.pt", "file", 900, "complete", False)
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "STEP", "SIZE", "AGE", "STATE", "LOCAL"]
    assert table[1].split() == ["step_900.pt", "900", "900B", "1h00m", "complete", "-"]
    assert any(line.startswith("output/checkpoint-600/") and "writing" in line for line in table)


def test_checkpoints_command_exit_codes(sshd, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = config_for(sshd, tmp_path, workdir)
    assert main(["--config", str(config), "checkpoints", "p", "trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert main(["--config", str(config), "checkpoints", "nope", "train"]) == 2
    assert main(["--config", str(config), "checkpoints", "p", "train"]) == 0
    assert "no checkpoints found" in capsys.readouterr().out
    missing = config_for(sshd, tmp_path, tmp_path / "does-not-exist")
    assert main(["--config", str(missing), "checkpoints", "p", "train"]) == 1
    assert "cannot enter its workdir" in capsys.readouterr().err
    unsafe = config_for(sshd, tmp_path, workdir, checkpoints=["../*.pt"])
    assert main(["--config", str(unsafe), "checkpoints", "p", "train"]) == 2
    assert "'..'" in capsys.readouterr().err
