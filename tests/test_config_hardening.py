"""Config reading that is bounded and strict (issue 19, items 9, 11 and 12).

A config file is input gpuctl does not control: a pasted snippet, a `--config` that
names the wrong thing, a file a tool generated. Whatever it holds, reading it ends
quickly with either a `Config` or a `ConfigError` whose every line names file, line
and field; never a traceback, a hang or memory running out. These tests feed the
shapes the adversarial review used (merge-key bombs, 1,000-deep lists, lone
surrogates, /dev/zero, a FIFO) and the fields it found too lenient.
"""

from __future__ import annotations

import os
from textwrap import dedent

import pytest

from sessions.config import ConfigError, ConfigProblem, load_config, parse_config
from tui.cli import main


def problems_of(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text), "cfg.yaml")
    str(info.value).encode("utf-8")  # printable: what the CLI does with it
    return info.value.problems


def only_problem(text: str) -> ConfigProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- item 11: aliases that multiply -----------------------------------------------------


def merge_bomb(levels: int, width: int = 9) -> str:
    """The review's shape: each anchor merges the previous one `width` times."""
    lines = ["x0: &x0 {k0: v}"]
    for i in range(1, levels + 1):
        refs = ", ".join(f"*x{i - 1}" for _ in range(width))
        lines.append(f"x{i}: &x{i} {{<<: [{refs}], k{i}: v}}")
    lines.append(f"pods: [{{name: a, host: h, <<: *x{levels}}}]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(60)  # the old reader took 189 s on 8 levels: a hang fails here by name
def test_a_merge_key_bomb_is_refused_at_the_alias_that_multiplies():
    text = merge_bomb(8)
    assert len(text) < 600
    problem = only_problem(text)
    assert (problem.line, problem.field) == (6, "x5.<<[0]")
    assert "aliases here expand the document past 50,000 values" in problem.message
    assert "billion laughs" in problem.message


@pytest.mark.timeout(60)
def test_a_list_bomb_in_a_raw_section_is_refused():
    """`policies` is kept as plain data (every alias copied): the classic billion laughs."""
    text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, 10):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    text += "pods: [{name: a, host: h}]\npolicies: {notify: *a9}\n"
    problem = only_problem(text)
    assert problem.field.startswith("a")
    assert "billion laughs" in problem.message


def test_an_anchor_reused_by_many_pods_still_works():
    """What anchors are for: one `defaults`-like block and one session merged everywhere."""
    pods = "\n".join(
        f"  - {{<<: *ssh, name: pod{i}, host: 10.0.0.{i}, sessions: [{{<<: *train, name: s{i}}}]}}"
        for i in range(200)
    )
    # Unknown top-level keys are errors, so the anchors live on the first pod.
    text = (
        "pods:\n"
        "  - name: base\n"
        "    host: 10.0.0.254\n"
        "    <<: &ssh {user: ubuntu, port: 2222, identity: /k, host_key: accept-new}\n"
        "    sessions:\n"
        "      - {name: first, <<: &train {command: python train.py, workdir: /w, log: train.log,\n"
        "                                  checkpoints: [ckpt/*.pt], env: {A: '1', B: '2'}}}\n"
        + pods + "\n"
    )
    config = parse_config(text, "cfg.yaml")
    assert config is not None and len(config.pods) == 201
    last = config.pods[-1]
    assert (last.name, last.user, last.port, last.host_key) == ("pod199", "ubuntu", 2222, "accept-new")
    assert (last.sessions[0].name, last.sessions[0].command, dict(last.sessions[0].env)) == (
        "s199", "python train.py", {"A": "1", "B": "2"})


# --- item 12: nesting, surrogates -------------------------------------------------------


@pytest.mark.parametrize("text, line", [
    ("pods: " + "[" * 1000 + "]" * 1000 + "\n", 1),
    ("pods:\n" + "".join("  " * i + "-\n" for i in range(1000)), 65),
    ("pods: " + "{a: " * 1000 + "b" + "}" * 1000 + "\n", 1),
], ids=["flow-lists", "block-lists", "flow-mappings"])
def test_a_thousand_deep_document_is_an_error_not_a_traceback(text, line):
    problem = only_problem(text)
    assert problem.line == line
    assert problem.field.startswith("pods")
    assert "nest deeper than 64 levels" in problem.message


def test_aliases_cannot_build_depth_the_text_does_not_show():
    """Each anchor 40 deep, each the next one's innermost value: shallow text, deep tree."""
    text = "a0: &a0 " + "[" * 40 + "x" + "]" * 40 + "\n"
    for i in range(1, 30):
        text += f"a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 + "\n"
    text += "pods: [{name: a, host: h}]\npolicies: {notify: *a29}\n"
    problem = problems_of(text)[0]
    assert "this alias nests lists and mappings deeper than 64 levels" in problem.message
    assert problem.line == 2


@pytest.mark.parametrize("text, field, column", [
    ('pods: [{name: a, host: "h\\ud800"}]', "pods[0].host", 24),
    ('pods: [{name: a, host: h, sessions: [{name: s, command: "x\\udfff"}]}]',
     "pods[0].sessions[0].command", 57),
    ('pods: [{name: a, host: h, "\\ud800": 1}]', "pods[0].(a key)", 27),
    ('pods: [{name: a, host: h}]\npolicies: {notify: [{command: "\\U0000d800"}]}', "policies.notify[0].command", 31),
], ids=["host", "command", "key", "policy"])
def test_a_lone_surrogate_is_an_error_naming_its_field(text, field, column):
    problem = only_problem(text)
    assert (problem.field, problem.column) == (field, column)
    assert "half of a UTF-16 surrogate pair" in problem.message


# --- item 12: what --config may name ----------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


@pytest.mark.timeout(60)  # before: /dev/zero read until memory ran out
def test_config_check_refuses_a_character_device(capsys):
    code, out = run_cli(capsys, "--config", "/dev/zero", "config", "check")
    assert code == 2
    assert "/dev/zero: is a character device, not a regular file; name the YAML file itself" in out


@pytest.mark.timeout(60)  # before: opening the FIFO waited for a writer forever
def test_config_check_refuses_a_fifo_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    code, out = run_cli(capsys, "--config", str(fifo), "config", "check")
    assert code == 2
    assert f"{fifo}: is a named pipe (FIFO), not a regular file" in out


def test_a_config_over_one_mib_is_refused_with_its_size(tmp_path):
    big = tmp_path / "config.yaml"
    big.write_text("pods: [{name: a, host: h}]\n" + "#" * (2**21) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(big)
    size = big.stat().st_size
    assert str(info.value) == (f"{big}: config is {size:,} bytes; gpuctl reads at most 1 MiB "
                               f"(1,048,576 bytes)")


def test_a_symlink_to_a_regular_config_is_still_read(tmp_path):
    """Dotfile managers link the config; only what the link reaches is judged."""
    real = tmp_path / "real.yaml"
    real.write_text("pods: [{name: a, host: h}]\n")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    assert load_config(link).pods[0].name == "a"
