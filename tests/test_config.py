"""Tests for sessions.config.loader: paths, loading, validation messages, describe.

Error cases are one table: each row is a small config, and the one problem it must
produce (line, field path, a fragment of the message with its hint). Every row asserts
there is exactly one problem, so a change that makes one mistake cascade into several
confusing messages fails here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from sessions.config.loader import (
    ENV_VAR,
    Config,
    ConfigError,
    ConfigLocation,
    ConfigNotFound,
    ConfigProblem,
    Defaults,
    PodConfig,
    SessionConfig,
    default_config_path,
    describe_config,
    load_config,
    locate_config,
    parse_config,
    resolve_config_path,
)

FULL = """\
defaults: {user: root, identity: ~/.ssh/id_ed25519, host_key: strict, port: 2222,
           connect_timeout: 5, command_timeout: 60, interval: 0.5}
read_only: true
theme: gpuctl-dark
keys: {pod.download: d, pod.teardown: ctrl+t}
policies:
  auto_download: newest
pods:
  - name: a100-west
    host: 203.0.113.7
    port: 22022
    user: ubuntu
    identity: ~/.ssh/west
    host_key: accept-new
    price_per_hour: 1.29
    workdir: /workspace
    connect_timeout: 20
    interval: 2
    provider: {type: runpod, id: abc123, region: us-west}
    sessions:
      - {name: train, workdir: /workspace, command: "python train.py", log: train.log}
      - name: finetune
        command: torchrun ft.py
        env: {CUDA_VISIBLE_DEVICES: 0, WANDB_API_KEY: s3cret}
        total_steps: 5000
        progress: 'step (?P<step>\\d+)/(?P<total>\\d+) loss (?P<loss>[\\d.]+)'
        resume: torchrun ft.py --resume {checkpoint}
        checkpoints: ["ckpt/step_*.pt", "best.pt"]
  - {name: alias-only, host: myalias}
  - {name: here, host: local}
"""


def parse(text: str) -> Config:
    return parse_config(dedent(text), "cfg.yaml")


def problems_of(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.problems


# --- happy paths ---------------------------------------------------------------------


def test_full_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    config = parse(FULL)
    assert config.path == Path("cfg.yaml")
    assert config.defaults == Defaults("root", "/home/u/.ssh/id_ed25519", "strict", 2222, 5.0, 60.0, 0.5)
    assert config.read_only is True
    assert config.theme == "gpuctl-dark"
    assert dict(config.keys) == {"pod.download": "d", "pod.teardown": "ctrl+t"}
    assert config.policies.auto_download == "newest"
    west, alias, here = config.pods
    assert (west.name, west.host, west.port, west.user) == ("a100-west", "203.0.113.7", 22022, "ubuntu")
    assert west.identity == "/home/u/.ssh/west"
    assert (west.host_key, west.price_per_hour, west.workdir) == ("accept-new", 1.29, "/workspace")
    assert (west.connect_timeout, west.interval, west.line) == (20.0, 2.0, 9)
    assert (west.provider.type, west.provider.id) == ("runpod", "abc123")
    assert dict(west.provider.options) == {"region": "us-west"}
    train, finetune = west.sessions
    assert train == SessionConfig("train", "python train.py", "/workspace", {}, "train.log", line=21)
    assert dict(finetune.env) == {"CUDA_VISIBLE_DEVICES": "0", "WANDB_API_KEY": "s3cret"}
    assert finetune.total_steps == 5000
    assert finetune.progress.startswith("step (?P<step>")
    assert finetune.resume == "torchrun ft.py --resume {checkpoint}"
    assert finetune.checkpoints == ("ckpt/step_*.pt", "best.pt")
    assert alias.line == 29 and here.is_local and not alias.is_local


def test_alias_alone_is_a_complete_pod_and_leaves_ssh_fields_unset() -> None:
    config = parse("""
        defaults: {user: root, port: 2222, identity: /k, host_key: accept-new}
        pods:
          - {name: x, host: myalias}
    """)
    # None, not the defaults: ~/.ssh/config must get its turn first (SSH layer).
    assert config.pods[0] == PodConfig("x", "myalias", line=4)
    assert config.defaults.user == "root"


def test_defaults_have_built_in_values() -> None:
    config = parse("pods: [{name: a, host: h}]")
    assert config.defaults == Defaults(None, None, None, None, 10.0, 30.0, 1.0)
    assert (config.read_only, dict(config.keys), config.policies, config.theme) == (False, {}, None, None)


def test_empty_values_mean_not_set() -> None:
    config = parse("""
        defaults:
        pods:
          - name: a
            host: h
            user:
            port: ~
            sessions:
    """)
    assert config.pods[0] == PodConfig("a", "h", line=4)


def test_plain_words_yaml_would_type_stay_text() -> None:
    config = parse("""
        pods:
          - name: 4090
            host: h
            provider: {type: vast, id: 123456}
            sessions: [{name: on, command: "true", env: {DEBUG: yes, RANK: 0}}]
    """)
    pod = config.pods[0]
    assert (pod.name, pod.provider.id, pod.sessions[0].name) == ("4090", "123456", "on")
    assert dict(pod.sessions[0].env) == {"DEBUG": "yes", "RANK": "0"}


def test_merge_keys_share_settings_without_duplicate_errors() -> None:
    config = parse("""
        pods:
          - &base {name: a, host: h, port: 2200, user: me}
          - <<: *base
            name: b
    """)
    assert (config.pods[1].name, config.pods[1].port, config.pods[1].user) == ("b", 2200, "me")


def test_config_is_immutable() -> None:
    config = parse(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pods[0].port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.pods[0].sessions[1].env["X"] = "y"  # type: ignore[index]
    assert isinstance(config.pods, tuple) and isinstance(config.pods[0].sessions, tuple)


def test_pod_lookup_suggests_close_name() -> None:
    config = parse(FULL)
    assert config.pod("here").host == "local"
    with pytest.raises(KeyError) as info:
        config.pod("a100-wset")
    assert str(info.value) == "no pod named 'a100-wset' in cfg.yaml; did you mean 'a100-west'?"
    with pytest.raises(KeyError, match="pods: a100-west, alias-only, here"):
        config.pod("zzz")
    with pytest.raises(KeyError, match="did you mean 'train'"):
        config.pod("a100-west").session("trian")


# --- error table ---------------------------------------------------------------------

POD = "pods:\n  - name: a\n    host: h\n"
"""A valid start; rows append lines 4.. to the pod `a`."""

ERRORS = [
    # YAML itself
    ("pods:\n  - name: a\n    host: [h\n", 4, "", "invalid YAML: expected ',' or ']'"),
    ("pods:\n\t- name: a\n", 2, "", "use spaces"),
    ("a: 1\n---\nb: 2\n", 2, "", "more than one YAML document"),
    (POD + '    sessions: [{name: t, progress: "(?P<step>\\d+)"}]\n', 4, "", "write regular expressions"),
    (POD + "    port: !!int abc\n", 4, "pods[0] (a).port", "expected an integer from 1 to 65535"),
    (POD + "    user: !secret x\n", 4, "pods[0] (a).user", "tag !secret is not supported"),
    (POD + "    port: 22\n    port: 23\n", 5, "pods[0] (a).port", "duplicate key 'port' (first set on line 4)"),
    (POD + "    ? [x]\n    : 1\n", 4, "pods[0] (a)", "a key must be plain text"),
    # shape
    ("- name: a\n  host: h\n", 1, "", "put the list of pods under 'pods:'"),
    ("hello\n", 1, "", "expected a mapping at the top level"),
    ("pods:\n  a: {host: h}\n", 2, "pods", "write each pod as '- name: <name>'"),
    ("pods:\n  - a100\n", 2, "pods[0]", "expected a pod entry (a mapping with at least name: and host:), got 'a100'"),
    ("pods: []\n", 1, "pods", "no pods configured"),
    ("theme: x\n", None, "pods", "no pods configured"),
    ("# only a comment\n", None, "", "the file is empty"),
    # names and required keys
    ("pods:\n  - host: h\n", 2, "pods[0]", "missing 'name'"),
    ("pods:\n  - name: a\n", 2, "pods[0] (a)", "missing 'host' (an IP address, a host name, an alias"),
    ("pods:\n  - name: a\n    host:\n", 3, "pods[0] (a).host", "'host' is empty"),
    ("pods:\n  - name: a100 west\n    host: h\n", 2, "pods[0].name", "' ' not allowed"),
    (POD + "  - name: a\n    host: h2\n", 4, "pods[1] (a).name", "duplicate pod name 'a' (first used on line 2)"),
    # unknown keys
    (POD + "    prot: 22\n", 4, "pods[0] (a).prot", "did you mean 'port'?"),
    (POD + "    IdentityFile: ~/.ssh/k\n", 4, "pods[0] (a).IdentityFile", "did you mean 'identity'?"),
    (POD + "    price: 2\n", 4, "pods[0] (a).price", "did you mean 'price_per_hour'?"),
    (POD + "    colour: red\n", 4, "pods[0] (a).colour", "valid keys here: name, host, port, user"),
    (POD + "    command_timeout: 5\n", 4, "pods[0] (a).command_timeout", "belongs in 'defaults:'"),
    (POD + "    command: x\n", 4, "pods[0] (a).command", "belongs in a session entry"),
    (POD + "colour: red\n", 4, "colour", "valid keys here: defaults, pods, read_only"),
    ("defaults: {host: h}\n" + POD, 1, "defaults.host", "belongs in a pod entry under 'pods:'"),
    (POD + "    sessions: [{name: t, cmd: x}]\n", 4, "pods[0] (a).sessions[0] (t).cmd", "did you mean 'command'?"),
    # numbers
    (POD + "    port: abc\n", 4, "pods[0] (a).port", "expected an integer from 1 to 65535, got 'abc'"),
    (POD + '    port: "22"\n', 4, "pods[0] (a).port", "remove the quotes"),
    (POD + "    port: 70000\n", 4, "pods[0] (a).port", "got 70000"),
    (POD + "    port: 22.5\n", 4, "pods[0] (a).port", "got 22.5"),
    (POD + "    port: yes\n", 4, "pods[0] (a).port", "YAML reads yes as the boolean true"),
    (POD + "    price_per_hour: -1\n", 4, "pods[0] (a).price_per_hour", "0 or more, got -1"),
    (POD + "    price_per_hour: no\n", 4, "pods[0] (a).price_per_hour", "the boolean false"),
    (POD + "    price_per_hour: .nan\n", 4, "pods[0] (a).price_per_hour", "got .nan"),
    (POD + "    interval: 0\n", 4, "pods[0] (a).interval", "seconds greater than 0, got 0"),
    ("defaults: {connect_timeout: -3}\n" + POD, 1, "defaults.connect_timeout", "greater than 0"),
    ("defaults: {command_timeout: soon}\n" + POD, 1, "defaults.command_timeout", "got 'soon'"),
    # host, user, host_key
    (POD.replace("host: h", "host: root@1.2.3.4"), 3, "pods[0] (a).host", "host: 1.2.3.4 and user: root"),
    (POD.replace("host: h", "host: box:2222"), 3, "pods[0] (a).host", "host: box and port: 2222"),
    (POD.replace("host: h", "host: -oProxyCommand=x"), 3, "pods[0] (a).host", "must not start with '-'"),
    (POD.replace("host: h", "host: ssh://box"), 3, "pods[0] (a).host", "without a scheme"),
    (POD + "    user: -x\n", 4, "pods[0] (a).user", "expected a login name"),
    (POD + "    host_key: accept_new\n", 4, "pods[0] (a).host_key", "did you mean 'accept-new'?"),
    (POD + "    host_key: no\n", 4, "pods[0] (a).host_key", "never accepts unknown host keys blindly"),
    ("defaults: {host_key: strcit}\n" + POD, 1, "defaults.host_key", "did you mean 'strict'?"),
    # provider
    (POD + "    provider: runpod\n", 4, "pods[0] (a).provider", "expected a mapping with 'type:'"),
    (POD + "    provider: {id: x}\n", 4, "pods[0] (a).provider", "missing 'type'"),
    (POD + "    provider: {type: [a]}\n", 4, "pods[0] (a).provider.type", "got a list"),
    # sessions
    (POD + "    sessions: {train: {command: x}}\n", 4, "pods[0] (a).sessions", "write each session as"),
    (POD + "    sessions: [{command: x}]\n", 4, "pods[0] (a).sessions[0]", "missing 'name'"),
    (POD + "    sessions:\n      - {name: t}\n      - {name: t}\n", 6, "pods[0] (a).sessions[1] (t).name",
     "duplicate session name 't' (first used on line 5)"),
    (POD + "    sessions: [{name: t, progress: 'step (?P<step>\\d+'}]\n", 4,
     "pods[0] (a).sessions[0] (t).progress", "not a valid regular expression: missing )"),
    (POD + "    sessions: [{name: t, progress: 'epoch (?P<epoch>\\d+)'}]\n", 4,
     "pods[0] (a).sessions[0] (t).progress", "named group 'epoch' not understood; use only step, total"),
    (POD + "    sessions: [{name: t, progress: 'step (\\d+)'}]\n", 4,
     "pods[0] (a).sessions[0] (t).progress", "capture the step as (?P<step>"),
    (POD + "    sessions: [{name: t, total_steps: 0}]\n", 4, "pods[0] (a).sessions[0] (t).total_steps", "got 0"),
    (POD + "    sessions: [{name: t, checkpoints: {a: b}}]\n", 4,
     "pods[0] (a).sessions[0] (t).checkpoints", "expected a glob pattern or a list of them, got a mapping"),
    (POD + "    sessions: [{name: t, env: {2FAST: x}}]\n", 4,
     "pods[0] (a).sessions[0] (t).env.2FAST", "environment variable name"),
    (POD + "    sessions: [{name: t, env: {A: [1]}}]\n", 4, "pods[0] (a).sessions[0] (t).env.A", "got a list"),
    # reserved top-level keys
    ('read_only: "true"\n' + POD, 1, "read_only", "remove the quotes"),
    ("keys: [a]\n" + POD, 1, "keys", "expected a mapping of names to text"),
    ("policies: [a]\n" + POD, 1, "policies", "expected a mapping of policies (auto_download, "),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"), ERRORS, ids=[f"{row[2] or 'file'}:{row[3][:40]}" for row in ERRORS]
)
def test_error_is_reported_once_with_line_field_and_hint(
    text: str, line: int | None, field: str, fragment: str
) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, "\n".join(map(str, problems))
    problem = problems[0]
    assert (problem.line, problem.field) == (line, field), str(problem)
    assert fragment in problem.message


def test_all_problems_are_collected_in_file_order_one_line_each() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "pods:\n  - name: a\n    host: h\n    port: abc\n  - name: b\n    host: h\n    prot: 1\n"
            "    price_per_hour: -2\n",
            "/home/u/.config/gpuctl/config.yaml",
        )
    assert str(info.value).splitlines() == [
        "/home/u/.config/gpuctl/config.yaml:4:11: pods[0] (a).port: expected an integer from 1 to 65535, got 'abc'",
        "/home/u/.config/gpuctl/config.yaml:7:5: pods[1] (b).prot: unknown key 'prot'; did you mean 'port'?",
        "/home/u/.config/gpuctl/config.yaml:8:21: pods[1] (b).price_per_hour: "
        "expected a price in US dollars per hour, 0 or more, got -2",
    ]


def test_empty_file_hints_an_example() -> None:
    with pytest.raises(ConfigError) as info:
        parse("")
    assert "no pods configured" in str(info.value)
    assert "- name: my-pod" in str(info.value)


# --- where the file is ---------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CONFIG_HOME is a Linux convention")
def test_default_path_honours_xdg_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_config_path() == tmp_path / "gpuctl" / "config.yaml"
    assert resolve_config_path(None, environ={}) == tmp_path / "gpuctl" / "config.yaml"


def test_env_overrides_default_and_cli_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    env = {ENV_VAR: "/etc/gpuctl.yaml"}
    assert locate_config(None, env) == ConfigLocation(Path("/etc/gpuctl.yaml"), "GPUCTL_CONFIG")
    assert locate_config("~/my.yaml", env) == ConfigLocation(Path("/home/u/my.yaml"), "--config")
    assert resolve_config_path(None, {ENV_VAR: ""}) == default_config_path()
    assert locate_config(None, {}).source == "default"


# --- reading the file ----------------------------------------------------------------


def test_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbfpods: [{name: a, host: h}]\n")  # a BOM is fine
    config = load_config(path)
    assert config.path == path and config.pods[0].name == "a"
    assert load_config(ConfigLocation(path, "--config")) == config


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("default", "gpuctl's default location; --config PATH or the GPUCTL_CONFIG environment variable"),
        ("GPUCTL_CONFIG", "this path came from the GPUCTL_CONFIG environment variable; unset it"),
        ("--config", "this path came from --config"),
    ],
)
def test_missing_file_says_where_and_why_and_shows_an_example(
    tmp_path: Path, source: str, says: str
) -> None:
    path = tmp_path / "gpuctl" / "config.yaml"
    with pytest.raises(ConfigNotFound) as info:
        load_config(ConfigLocation(path, source))
    message = str(info.value)
    assert message.startswith(f"{path}: no config file here (")
    assert says in message
    assert f"mkdir -p {tmp_path / 'gpuctl'} && $EDITOR {path}" in message
    assert "pods:\n    - name: my-pod\n      host: 203.0.113.7" in message
    assert "Traceback" not in message


def test_missing_file_from_a_bare_path_still_names_gpuctl_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "nope.yaml"
    monkeypatch.setenv(ENV_VAR, str(path))
    with pytest.raises(ConfigNotFound, match="came from the GPUCTL_CONFIG environment variable"):
        load_config(resolve_config_path(None))
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ConfigNotFound, match=r"reads the file named by --config PATH, else \$GPUCTL_CONFIG"):
        load_config(path)


def test_missing_file_command_keeps_tilde_and_quotes_spaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "Library" / "Application Support" / "gpuctl" / "config.yaml"
    with pytest.raises(ConfigNotFound) as info:
        load_config(path)
    assert "mkdir -p ~/'Library/Application Support/gpuctl' && $EDITOR ~/'Library/Application Support/gpuctl/config.yaml'" in str(info.value)


def test_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a file; name the YAML file itself, e.g. {tmp_path / 'config.yaml'}"
    assert not isinstance(info.value, ConfigNotFound)


def test_unreadable_file_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pods: []\n")

    real_open = os.open

    def refuse(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    # Simulated: chmod 000 does not stop root, and tests may run as root.
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ConfigError, match="cannot be read: permission denied"):
        load_config(path)


def test_non_utf8_file_points_at_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"pods:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problem = info.value.problems[0]
    assert (problem.line, problem.column) == (2, 14)
    assert "not UTF-8 text (byte 0xe9)" in problem.message


# --- describe ------------------------------------------------------------------------


def test_describe_says_what_was_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    text = describe_config(parse(FULL))
    assert "Config: cfg.yaml" in text
    assert "Defaults: user root, identity ~/.ssh/id_ed25519, host key strict, port 2222" in text
    assert "Read-only: yes" in text
    assert "3 pods:" in text
    assert "a100-west  (line 9)" in text
    assert "  identity    ~/.ssh/west" in text
    assert "  price       $1.29/h" in text
    assert "  provider    runpod, id abc123; options region" in text
    assert "  sessions    train: python train.py" in text
    assert "env CUDA_VISIBLE_DEVICES, WANDB_API_KEY" in text
    assert "s3cret" not in text  # env values may be secrets
    alias = text.split("alias-only")[1].split("here  (line")[0]
    assert "  user        from ~/.ssh/config, else defaults (root)" in alias
    assert "  port        from ~/.ssh/config, else defaults (2222)" in alias
    assert "  host key    strict (from defaults)" in alias
    assert "  host        local (this machine, no SSH)" in text


def test_describe_without_defaults_names_the_fallbacks() -> None:
    text = describe_config(parse("pods: [{name: a, host: h}]"))
    assert "  port        from ~/.ssh/config, else 22" in text
    assert "  host key    strict (built-in default)" in text
    assert "1 pod:" in text


def test_stall_minutes_is_a_positive_number_of_minutes(tmp_path):
    ok = parse_config("pods:\n  - name: a\n    host: h\n    sessions:\n      - {name: t, stall_minutes: 2.5}\n", tmp_path / "c.yaml")
    assert ok.pods[0].sessions[0].stall_minutes == 2.5
    with pytest.raises(ConfigError) as err:
        parse_config("pods:\n  - name: a\n    host: h\n    sessions:\n      - {name: t, stall_minutes: 0}\n", tmp_path / "c.yaml")
    assert ":5:" in str(err.value) and "minutes greater than 0" in str(err.value)


def test_a_tagged_boolean_that_is_not_one_is_a_config_error_not_a_crash(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("read_only: !!bool maybe\npods: [{name: a, host: h}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:1:12: read_only: expected true or false; 'maybe' is not a valid bool"
