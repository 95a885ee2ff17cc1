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
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from sessions.config.loader import ConfigError, ConfigProblem, load_config, parse_config
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


def list_bomb(levels: int) -> str:
    """The classic billion laughs: nine lists of nine aliases of the previous list."""
    text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels + 1):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text + f"pods: [{{name: a, host: h}}]\npolicies: {{notify: *a{levels}}}\n"


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
    problem = only_problem(list_bomb(9))
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


@pytest.mark.timeout(60)
def test_a_document_of_more_than_50000_values_is_refused_where_it_crosses():
    """Within the 1 MiB limit a flat list of 500,000 numbers took a minute to read and
    gave as many problems; the reader stops at the value that crosses the bound."""
    problem = only_problem("pods:\n  - [" + ", ".join(["1"] * 60_000) + "]\n")
    assert (problem.line, problem.field) == (2, "pods[0][49996]")  # after the 4 values around it
    assert problem.message.startswith("the document holds more than 50,000 values")


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


# --- item 12: fields config check let through ---------------------------------------------


@pytest.mark.parametrize("glob, message", [
    ("/etc/*", "checkpoints glob '/etc/*' is absolute; gpuctl takes paths relative to the workdir"),
    ("../*/*.pt", "checkpoints glob '../*/*.pt' contains '..'; gpuctl refuses paths that leave their folder"),
    ("ckpts/../../x", "checkpoints glob 'ckpts/../../x' contains '..'"),
], ids=["absolute", "dotdot", "dotdot-inside"])
def test_checkpoint_globs_that_leave_the_workdir_are_refused_by_config_check(glob, message):
    """The runtime already refused these on first listing; now the file says so up front."""
    problem = only_problem(f"""\
        pods:
          - name: a
            host: h
            sessions: [{{name: t, checkpoints: ["ok/*.pt", "{glob}"]}}]
        """)
    assert (problem.line, problem.field) == (4, "pods[0] (a).sessions[0] (t).checkpoints[1]")
    assert message in problem.message


@pytest.mark.parametrize("field, value, shown", [
    ("host", '"10.0.0.1\\0-oProxyCommand=x"', "NUL"),
    ("user", '"root\\0"', "NUL"),
    ("host", '"h\\e]52;c;aGk=\\a"', "control character '\\x1b'"),
    ("user", '"ro\\x7fot"', "control character '\\x7f'"),
    ("host", '"h\\x85"', "control character '\\x85'"),
], ids=["host-nul", "user-nul", "host-osc52", "user-del", "host-c1"])
def test_nul_and_control_characters_in_host_and_user_are_refused(field, value, shown):
    problem = only_problem(f"pods: [{{name: a, host: h, {field}: {value}}}]\n".replace(
        "host: h, host:", "host:"))
    assert (problem.line, problem.field) == (1, f"pods[0] (a).{field}")
    assert shown in problem.message


def test_a_nul_is_refused_in_any_text_field():
    problem = only_problem('pods: [{name: a, host: h, sessions: [{name: t, command: "python\\0 x.py"}]}]')
    assert problem.field == "pods[0] (a).sessions[0] (t).command"
    assert "holds a NUL character" in problem.message


def test_unknown_key_binding_ids_are_refused_with_a_suggestion():
    problems = problems_of("""\
        keys: {pod.teardown: ctrl+t, teardown: x, pod.kil: K, zzz: z}
        pods: [{name: a, host: h}]
        """)
    assert [(p.line, p.column, p.field) for p in problems] == [
        (1, 30, "keys.teardown"), (1, 43, "keys.pod.kil"), (1, 55, "keys.zzz")]
    assert problems[0].message == "no key binding with id 'teardown'; did you mean 'pod.teardown'?"
    assert problems[1].message == "no key binding with id 'pod.kil'; did you mean 'pod.kill'?"
    assert problems[2].message.startswith("no key binding with id 'zzz'; ids: app.help, app.quit,")


def test_the_config_knows_exactly_the_ids_the_tui_binds():
    """The id list lives in sessions (config check must not load Textual); this keeps
    it equal to the TUI's bindings, so neither can drift from the other."""
    from sessions.config.model import KEY_BINDING_IDS
    from tui.bindings import binding_ids

    assert len(set(KEY_BINDING_IDS)) == len(KEY_BINDING_IDS)
    assert set(KEY_BINDING_IDS) == binding_ids()
    config = parse_config("keys: {" + ", ".join(f"{i}: x" for i in KEY_BINDING_IDS) + "}\n"
                          "pods: [{name: a, host: h}]\n", "cfg.yaml")
    assert set(config.keys) == binding_ids()


def test_checking_a_config_with_sessions_does_not_load_asyncssh():
    """The globs and session names are checked by the runtime's own rules
    (`checkpoints.check_relative`, `tmux.tmux_name_problem`); importing them must not
    cost the TUI's first frame the ~170 ms asyncssh import (tests/test_tui_startup.py)."""
    code = dedent("""
        import sys
        from sessions.config.loader import parse_config
        parse_config("pods: [{name: a, host: h, sessions: [{name: t, checkpoints: [x/*.pt]}]}]", "c")
        print(sorted(m for m in sys.modules if m.split(".")[0] == "asyncssh"))
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]", out.stderr


# --- item 9: names tmux would rewrite -------------------------------------------------------


def test_a_session_name_tmux_would_rewrite_is_refused():
    problem = only_problem("pods: [{name: a, host: h, sessions: [{name: exp.1, command: x}]}]")
    assert (problem.line, problem.column, problem.field) == (1, 45, "pods[0] (a).sessions[0] (exp.1).name")
    assert "tmux would name the session 'exp_1', not 'exp.1'" in problem.message


def test_two_session_names_that_are_one_tmux_name_are_an_error():
    """tmux stores `a.b` as `a_b`: killing one would kill the other."""
    problems = problems_of("""\
        pods:
          - name: a
            host: h
            sessions:
              - {name: a_b, command: x}
              - {name: a.b, command: y}
        """)
    assert [(p.line, p.field) for p in problems] == [(6, "pods[0] (a).sessions[1] (a.b).name")]
    assert "tmux would name the session 'a_b', not 'a.b'" in problems[0].message


def test_pod_names_keep_dots_but_not_dot_folders():
    """A pod name is no tmux name (`.` is fine); it is a folder in download paths."""
    config = parse_config("pods: [{name: a100.west, host: h, sessions: [{name: t}]}]", "cfg.yaml")
    assert config.pods[0].name == "a100.west"
    for bad in (".", ".."):
        problem = only_problem(f"pods: [{{name: '{bad}', host: h}}]")
        assert problem.field == f"pods[0] ({bad}).name"
        assert f"{bad!r} cannot name a pod" in problem.message


def test_config_check_reports_a_dotted_session_name_and_exits_2(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("pods:\n  - name: a\n    host: h\n    sessions: [{name: a.b, command: x}]\n")
    code, out = run_cli(capsys, "--config", str(path), "config", "check")
    assert code == 2
    assert f"{path}:4:23: pods[0] (a).sessions[0] (a.b).name: tmux would name the session 'a_b'" in out


# --- item 4 of the brief: a bounded fuzz of the reader ----------------------------------------

REALISTIC = """\
defaults: {user: root, host_key: strict}
keys: {pod.teardown: ctrl+t}
policies:
  auto_resume: {max_restarts: 5}
  alerts: {gpu_temp_c: 85, nan_loss: true}
  budget: {max_usd: 120, action: stop}
  notify: [desktop, {command: "notify-send {message}", kinds: [alert]}]
pods:
  - name: a100
    host: 203.0.113.7
    <<: &ssh {user: ubuntu, port: 2222, price_per_hour: 1.29}
    provider: {type: runpod, id: abc123}
    sessions:
      - &train {name: train, workdir: /w, command: "python t.py", log: t.log}
      - name: ft
        env: {CUDA_VISIBLE_DEVICES: 0}
        progress: 'step (?P<step>\\d+)'
        resume: torchrun ft.py --resume {checkpoint}
        checkpoints: ["ckpt/step_*.pt"]
        policies: {auto_resume: off}
  - {name: h100, host: h100-box, <<: *ssh, sessions: [*train]}
"""
"""Every section and kind of value once, with an anchor, a merge and an alias: small,
because every prefix of it is read (PyYAML is pure Python here: ~5 ms a read)."""

SUBSTITUTES = ("[1, x]", "{a: 1}", "42", "-3.5", ".inf", "true", "null", "''", '"\\0"', '"\\ud800"', "~/x",
               "*ssh", "&z [*z]", "!!int abc", "!custom x", "[" * 100 + "]" * 100)
"""Typed mutations: each node's text swapped for a list, a mapping, numbers, a boolean,
null, an empty string, a NUL, a lone surrogate, a path, an alias (some spots make it
undefined), a recursive list, a tag YAML rejects, a tag it does not know, and nesting
past the limit."""


def bombs() -> list[str]:
    """Aliases that multiply, in merges and in plain lists; recursive aliases; depth."""
    out = [merge_bomb(levels) for levels in range(1, 10)]
    out += [list_bomb(levels) for levels in range(1, 10)]
    out += [
        "pods: &p [{name: a, host: h, sessions: *p}]\n",
        "pods: [&q {name: a, host: h, <<: *q}]\n",
        "pods: [&q {name: a, host: h, sessions: [{name: s, policies: *q}]}]\n",
        "pods: [{name: a, host: h, policies: &r {notify: [*r]}}]\n",
        "pods: [{name: a, host: h}]\npolicies: &r {notify: [{command: *r}]}\n",
        "pods: [{name: a, host: h, provider: &r {type: runpod, region: *r}}]\n",
        "keys: &k {pod.kill: *k}\npods: [{name: a, host: h}]\n",
    ]
    for depth in (10, 63, 64, 65, 200, 2000):
        out.append("pods: " + "[" * depth + "]" * depth + "\n")
        out.append("pods: [{name: a, host: h}]\npolicies: " + "{a: " * depth + "1" + "}" * depth + "\n")
    return out


def mutations(text: str) -> list[str]:
    """`text` with each node's span replaced by substitutes."""
    from sessions.config import yaml_lines

    spans: list[tuple[int, int]] = []
    stack = [yaml_lines.compose(text)]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        spans.append((node.start_mark.index, node.end_mark.index))
        if isinstance(node.value, list):
            stack += [n for item in node.value for n in (item if isinstance(item, tuple) else (item,))]
    # Three substitutes per node, rotating, so every kind lands on every kind of node
    # over the file while the case count stays a few hundred.
    return [text[:start] + SUBSTITUTES[(i * 5 + j) % len(SUBSTITUTES)] + text[end:]
            for i, (start, end) in enumerate(sorted(set(spans))) for j in range(3)]


def load_or_config_error(text: str) -> None:
    """The property: a `Config` that can be described, or a `ConfigError` that can be
    printed; any other exception fails the test with the text that caused it."""
    from sessions.config.loader import describe_config

    try:
        config = parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems, text
        str(exc).encode("utf-8")
        return
    except Exception as exc:  # the point: report which input broke it
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- for this config:\n{text}") from exc
    describe_config(config).encode("utf-8")


def test_the_realistic_config_itself_loads():
    config = parse_config(REALISTIC, "fuzz.yaml")
    assert [p.name for p in config.pods] == ["a100", "h100"]
    assert (config.pods[1].user, config.pods[1].sessions[0].command) == ("ubuntu", "python t.py")


@pytest.mark.timeout(120)  # a case that hangs (as the merge bombs did) fails here by name
def test_every_truncation_loads_or_is_a_config_error():
    for end in range(len(REALISTIC) + 1):
        load_or_config_error(REALISTIC[:end])


@pytest.mark.timeout(120)
def test_every_typed_mutation_loads_or_is_a_config_error():
    cases = mutations(REALISTIC)
    assert len(cases) > 200
    for text in cases:
        load_or_config_error(text)


@pytest.mark.timeout(120)
def test_bombs_recursion_and_depth_load_or_are_config_errors():
    for text in bombs():
        load_or_config_error(text)
