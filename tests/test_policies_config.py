"""Tests for `policies:` blocks in the config: top level, pod entry, session entry.

Valid blocks become `Policies` layers on Config / PodConfig / SessionConfig, merged by
`policies_for` (innermost key wins, nested blocks key by key, `off` disables an outer
value). Bad blocks produce one `file:line:column: field: message` line per problem,
all of them in one pass.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent

import pytest

from sessions.config.loader import (
    ConfigError,
    Policies,
    describe_config,
    load_config,
    parse_config,
    policies_for,
)
from sessions.config.policy_model import (
    AlertLayer,
    Alerts,
    AutoResume,
    Budget,
    BudgetLayer,
    NotifyTarget,
    ResumeLayer,
)
from tui.cli import main

EVERY_KEY = """\
auto_download: newest
keep_local: 3
auto_resume: {max_restarts: 5, backoff_s: 60}
alerts: {gpu_temp_c: 85, disk_used_pct: 90, stall_minutes: 15, loss_spike: 3.0,
         nan_loss: true, gpu_idle_minutes: 10}
budget: {max_usd: 120, action: stop, grace_minutes: 5}
notify: [desktop, {webhook: "https://hooks.example.com/T0/B1?x=1"}, {command: "notify-send gpuctl {message}", kinds: [alert, budget_action]}]
download_dir: "ckpt/{pod}/{session}"
checkpoint_interval_s: 30
"""
"""Every key the issue lists, as it writes them."""

EVERY_KEY_LAYER = Policies(
    auto_download="newest",
    keep_local=3,
    auto_resume=ResumeLayer(enabled=True, max_restarts=5, backoff_s=60.0),
    alerts=AlertLayer(85.0, 90.0, 15.0, 3.0, True, 10.0),
    budget=BudgetLayer(enabled=True, max_usd=120.0, action="stop", grace_minutes=5.0),
    notify=(NotifyTarget("desktop", line=0), NotifyTarget("webhook", "https://hooks.example.com/T0/B1?x=1", line=0),
            NotifyTarget("command", "notify-send gpuctl {message}", ("alert", "budget_action"), line=0)),
    download_dir="ckpt/{pod}/{session}",
    checkpoint_interval_s=30.0,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(dedent(text))
    return path


def parse(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    return parse_config(path.read_text(), path)


def error_lines(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        parse_config(path.read_text(), path)
    return str(info.value).splitlines()


def block(text: str, spaces: int) -> str:
    return indent(text, " " * spaces)


def without_lines(layer: Policies) -> Policies:
    """The layer with its line numbers zeroed, to compare with EVERY_KEY_LAYER."""
    import dataclasses

    notify = tuple(dataclasses.replace(t, line=0) for t in layer.notify or ())
    return dataclasses.replace(layer, notify=notify, line=None)


# --- valid blocks at every level -----------------------------------------------------


def test_every_key_at_the_top_level(tmp_path: Path) -> None:
    config = parse(tmp_path, "policies:\n" + block(EVERY_KEY, 2) + "pods: [{name: a, host: h}]\n")
    assert without_lines(config.policies) == EVERY_KEY_LAYER
    assert config.policies.line == 2
    assert [t.line for t in config.policies.notify] == [8, 8, 8]
    assert config.pods[0].policies is None


def test_every_key_in_a_pod_entry(tmp_path: Path) -> None:
    config = parse(tmp_path, "pods:\n  - name: a\n    host: h\n    policies:\n" + block(EVERY_KEY, 6))
    assert config.policies is None
    assert without_lines(config.pods[0].policies) == EVERY_KEY_LAYER


def test_every_key_in_a_session_entry(tmp_path: Path) -> None:
    config = parse(tmp_path, "pods:\n  - name: a\n    host: h\n    sessions:\n      - name: t\n"
                             "        policies:\n" + block(EVERY_KEY, 10))
    assert config.pods[0].policies is None
    session = config.pods[0].sessions[0]
    assert without_lines(session.policies) == EVERY_KEY_LAYER
    effective = policies_for(config, config.pods[0], "t")
    assert effective.auto_download == "newest" and effective.keep_local == 3
    assert effective.auto_resume == AutoResume(True, 5, 60.0)
    assert effective.alerts == Alerts(85.0, 90.0, 15.0, 3.0, True, 10.0)
    assert effective.budget == Budget(120.0, "stop", 5.0)
    assert [t.kind for t in effective.notify] == ["desktop", "webhook", "command"]
    assert (effective.download_dir, effective.checkpoint_interval_s) == ("ckpt/{pod}/{session}", 30.0)


@pytest.mark.parametrize(("written", "expected"), [
    ("auto_download: off", Policies(auto_download="off")),
    ('auto_download: "off"', Policies(auto_download="off")),
    ("auto_download: all", Policies(auto_download="all")),
    ("keep_local: off", Policies(keep_local=False)),
    ("keep_local: false", Policies(keep_local=False)),
    ("auto_resume: on", Policies(auto_resume=ResumeLayer(enabled=True))),
    ("auto_resume: true", Policies(auto_resume=ResumeLayer(enabled=True))),
    ("auto_resume: off", Policies(auto_resume=ResumeLayer(enabled=False))),
    ("auto_resume: {max_restarts: 0, enabled: false}", Policies(auto_resume=ResumeLayer(False, 0))),
    ("auto_resume: {backoff_s: 0}", Policies(auto_resume=ResumeLayer(True, None, 0.0))),
    ("alerts: off", Policies(alerts=AlertLayer(False, False, False, False, False, False, False))),
    ("alerts: {gpu_temp_c: off, nan_loss: false}", Policies(alerts=AlertLayer(gpu_temp_c=False, nan_loss=False))),
    ("budget: off", Policies(budget=BudgetLayer(enabled=False))),
    ("budget: {max_usd: 9.5}", Policies(budget=BudgetLayer(enabled=True, max_usd=9.5))),
    ("notify: desktop", Policies(notify=(NotifyTarget("desktop", line=2),))),
    ("notify: {webhook: 'http://h:8080/x'}", Policies(notify=(NotifyTarget("webhook", "http://h:8080/x", line=2),))),
    ("notify: [{desktop: true, kinds: alert}]", Policies(notify=(NotifyTarget("desktop", None, ("alert",), 2),))),
    ("notify: [{desktop: false}]", Policies(notify=())),
    ("notify: off", Policies(notify=())),
    ("notify: []", Policies(notify=())),
    ("download_dir: /data/ckpt", Policies(download_dir="/data/ckpt")),
    ("download_dir: 'runs/{{literal}}/{pod}'", Policies(download_dir="runs/{{literal}}/{pod}")),
    ("auto_download:", Policies()),
])
def test_short_forms_and_off(tmp_path: Path, written: str, expected: Policies) -> None:
    config = parse(tmp_path, f"policies:\n  {written}\npods: [{{name: a, host: h}}]\n")
    assert config.policies == Policies(**{**expected.__dict__, "line": 2})


def test_alerts_on_writes_the_default_thresholds(tmp_path: Path) -> None:
    config = parse(tmp_path, """\
        policies: {alerts: off}
        pods:
          - {name: a, host: h, policies: {alerts: on}}
    """)
    assert policies_for(config, config.pods[0]).alerts == Alerts()


def test_download_dir_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    config = parse(tmp_path, "policies: {download_dir: '~/ckpt/{pod}'}\npods: [{name: a, host: h}]\n")
    assert config.policies.download_dir == "/home/u/ckpt/{pod}"


# --- merging: innermost wins ---------------------------------------------------------

LAYERED = """\
policies:
  auto_download: newest
  keep_local: 3
  auto_resume: {max_restarts: 5, backoff_s: 60}
  alerts: {gpu_temp_c: 85, stall_minutes: 15, loss_spike: 3.0}
  budget: {max_usd: 120, action: alert}
  notify: [desktop]
pods:
  - name: a100
    host: h
    policies:
      keep_local: off
      alerts: {gpu_temp_c: 80, disk_used_pct: off}
      budget: {action: teardown}
      notify: [{command: "say {message}"}]
    sessions:
      - name: train
        policies:
          auto_download: all
          alerts: {stall_minutes: 60, gpu_temp_c: off}
          auto_resume: off
      - name: eval
  - name: h100
    host: h2
    policies: {budget: off, auto_resume: {max_restarts: 1}}
    sessions:
      - name: t
        policies: {budget: {max_usd: 10}}
"""


def test_top_level_applies_to_every_pod_and_session(tmp_path: Path) -> None:
    config = parse(tmp_path, LAYERED)
    h100 = config.pod("h100")
    pod = policies_for(config, h100)
    assert (pod.auto_download, pod.keep_local) == ("newest", 3)
    assert pod.alerts == Alerts(gpu_temp_c=85.0, stall_minutes=15.0, loss_spike=3.0)
    assert [t.kind for t in pod.notify] == ["desktop"]


def test_pod_layer_overrides_top_level_key_by_key(tmp_path: Path) -> None:
    config = parse(tmp_path, LAYERED)
    a100 = config.pod("a100")
    eval_ = policies_for(config, a100, "eval")  # no layer of its own: the pod's
    assert eval_ == policies_for(config, a100)
    assert eval_.auto_download == "newest"
    assert eval_.keep_local is None  # off: keep every copy
    assert eval_.alerts == Alerts(gpu_temp_c=80.0, disk_used_pct=None, stall_minutes=15.0, loss_spike=3.0)
    assert eval_.budget == Budget(120.0, "teardown", 15.0)  # max_usd from the top, action from the pod
    assert eval_.notify == (NotifyTarget("command", "say {message}", line=15),)  # a list is replaced whole
    assert eval_.auto_resume == AutoResume(True, 5, 60.0)


def test_session_layer_wins_and_off_disables_an_outer_value(tmp_path: Path) -> None:
    config = parse(tmp_path, LAYERED)
    train = policies_for(config, config.pod("a100"), "train")
    assert train.auto_download == "all"
    assert train.alerts == Alerts(gpu_temp_c=None, disk_used_pct=None, stall_minutes=60.0, loss_spike=3.0)
    assert train.auto_resume == AutoResume(False, 5, 60.0)
    assert train.budget == Budget(120.0, "teardown", 15.0)


def test_budget_off_then_on_again_further_in(tmp_path: Path) -> None:
    config = parse(tmp_path, LAYERED)
    h100 = config.pod("h100")
    assert policies_for(config, h100).budget.max_usd is None
    assert policies_for(config, h100, "t").budget == Budget(10.0, "alert", 15.0)
    assert policies_for(config, h100).auto_resume == AutoResume(True, 1, 60.0)


def test_a_block_turned_off_then_on_again_starts_afresh(tmp_path: Path) -> None:
    """`off` stops every outer value of the block: no teardown inherited past it."""
    config = parse(tmp_path, """\
        policies:
          budget: {max_usd: 100, action: teardown, grace_minutes: 1}
          auto_resume: {max_restarts: 9, backoff_s: 5}
        pods:
          - name: a
            host: h
            policies: {budget: off, auto_resume: off}
            sessions:
              - name: t
                policies: {budget: {max_usd: 10}, auto_resume: on}
    """)
    pod = config.pods[0]
    assert policies_for(config, pod, "t").budget == Budget(10.0, "alert", 15.0)
    assert policies_for(config, pod, "t").auto_resume == AutoResume(True, 5, 60.0)
    assert policies_for(config, pod).budget.max_usd is None
    assert policies_for(config, pod).auto_resume.enabled is False


def test_no_policies_anywhere_gives_gpuctl_defaults(tmp_path: Path) -> None:
    config = parse(tmp_path, "pods: [{name: a, host: h, sessions: [{name: t}]}]\n")
    effective = policies_for(config, config.pods[0], "t")
    assert (effective.auto_download, effective.keep_local, effective.notify) == ("off", None, ())
    assert effective.alerts == Alerts() and effective.auto_resume == AutoResume(False)
    assert effective.budget == Budget(None)


# --- errors: file, line, field, message ----------------------------------------------

POD = "pods:\n  - name: a\n    host: h\n"
SESSION = POD + "    sessions:\n      - name: t\n"

ERRORS = [
    # policies level
    ("policies: [a]\n" + POD, "1:11: policies: expected a mapping of policies"),
    ("policies:\n  colour: red\n" + POD, "2:3: policies.colour: unknown key 'colour'; valid keys here: auto_download"),
    ("policies:\n  resume: on\n" + POD, "2:3: policies.resume: unknown key 'resume'; did you mean 'auto_resume'?"),
    ("policies:\n  gpu_temp_c: 80\n" + POD, "2:3: policies.gpu_temp_c: unknown key 'gpu_temp_c'; it belongs under 'alerts:'"),
    ("policies:\n  max_usd: 80\n" + POD, "2:3: policies.max_usd: unknown key 'max_usd'; it belongs under 'budget:'"),
    (POD + "    alerts: {gpu_temp_c: 80}\n",
     "4:5: pods[0] (a).alerts: unknown key 'alerts'; it is a policy: put it under 'policies:'"),
    (POD + "    policies:\n      keep_local: 1\n      keep_local: 2\n",
     "6:7: pods[0] (a).policies.keep_local: duplicate key 'keep_local' (first set on line 5)"),
    # auto_download, keep_local
    ("policies: {auto_download: latest}\n" + POD,
     "1:27: policies.auto_download: expected newest, all or off, got 'latest'; did you mean 'newest'?"),
    ("policies: {auto_download: yes}\n" + POD,
     "policies.auto_download: expected newest, all or off, got yes (YAML reads yes as the boolean true); say which"),
    (POD + "    policies: {keep_local: 0}\n",
     "4:28: pods[0] (a).policies.keep_local: expected a whole number of copies greater than 0 (or off to keep all), got 0"),
    (POD + "    policies: {keep_local: 2.5}\n", "pods[0] (a).policies.keep_local: expected a whole number"),
    (POD + "    policies: {keep_local: true}\n", "pods[0] (a).policies.keep_local: expected a whole number"),
    # auto_resume
    (SESSION + "        policies: {auto_resume: {max_restart: 3}}\n",
     "6:34: pods[0] (a).sessions[0] (t).policies.auto_resume.max_restart: unknown key 'max_restart'; "
     "did you mean 'max_restarts'?"),
    (SESSION + "        policies: {auto_resume: {max_restarts: -1}}\n",
     "6:48: pods[0] (a).sessions[0] (t).policies.auto_resume.max_restarts: expected a whole number of restarts, 0 or more, got -1"),
    (SESSION + "        policies: {auto_resume: {backoff_s: 1m}}\n",
     "pods[0] (a).sessions[0] (t).policies.auto_resume.backoff_s: expected a number of seconds, 0 or more, got '1m'"),
    (SESSION + "        policies: {auto_resume: {enabled: maybe}}\n",
     "pods[0] (a).sessions[0] (t).policies.auto_resume.enabled: expected true or false, got 'maybe'"),
    ("policies: {auto_resume: 5}\n" + POD, "policies.auto_resume: expected on, off or a mapping"),
    # alerts
    ("policies:\n  alerts: {temp: 85}\n" + POD,
     "2:12: policies.alerts.temp: unknown key 'temp'; did you mean 'gpu_temp_c'?"),
    ("policies:\n  alerts: {gpu_temp_c: 200}\n" + POD,
     "2:24: policies.alerts.gpu_temp_c: expected a GPU temperature in °C, above 0 and at most 150, or off, got 200"),
    ("policies:\n  alerts: {disk_used_pct: 101}\n" + POD, "policies.alerts.disk_used_pct: expected a disk use percentage"),
    ("policies:\n  alerts: {stall_minutes: 0}\n" + POD, "policies.alerts.stall_minutes: expected a number of minutes greater than 0, or off, got 0"),
    ("policies:\n  alerts: {loss_spike: 1}\n" + POD, "policies.alerts.loss_spike: expected a factor greater than 1.0"),
    ("policies:\n  alerts: {nan_loss: 1}\n" + POD, "policies.alerts.nan_loss: expected true or false, got 1"),
    ("policies:\n  alerts: {gpu_idle_minutes: '10'}\n" + POD, "policies.alerts.gpu_idle_minutes: expected a number of minutes greater than 0, or off, got '10' (quoted"),
    ("policies:\n  alerts: [gpu_temp_c]\n" + POD, "2:11: policies.alerts: expected off, on or a mapping of thresholds"),
    # budget
    (POD + "    policies:\n      budget: {max_usd: 50, action: shutdown}\n",
     "5:37: pods[0] (a).policies.budget.action: expected stop, teardown or alert, got 'shutdown'; did you mean 'stop'?"),
    ("policies:\n  budget: {action: stop}\n" + POD,
     "2:11: policies.budget: budget needs max_usd (the spending limit in US dollars"),
    (POD + "    policies: {budget: {grace_minutes: 5}}\n",
     "4:24: pods[0] (a).policies.budget: budget needs max_usd (the spending limit in US dollars, e.g. "
     "{max_usd: 120, action: stop}) and no outer policies block sets one"),
    ("policies: {budget: off}\n" + SESSION + "        policies: {budget: {action: alert}}\n",
     "7:28: pods[0] (a).sessions[0] (t).policies.budget: budget needs max_usd"),
    ("policies: {budget: {max_usd: 0}}\n" + POD, "policies.budget.max_usd: expected an amount in US dollars greater than 0, got 0"),
    ("policies: {budget: {max_usd: 5, grace_minutes: -1}}\n" + POD, "policies.budget.grace_minutes: expected a number of minutes, 0 or more, got -1"),
    ("policies: {budget: {max_usd: 5, limit: 3}}\n" + POD, "policies.budget.limit: unknown key 'limit'; did you mean 'max_usd'?"),
    ("policies: {budget: 120}\n" + POD, "policies.budget: expected off or a mapping such as {max_usd: 120, action: stop}, got 120; write budget: {max_usd: 120}"),
    # notify
    ("policies:\n  notify: [desktop, {webhook: 'https://x', command: 'y'}]\n" + POD,
     "2:21: policies.notify[1]: a notify item is one of desktop, webhook or command, and this one has "
     "webhook and command; make each its own list item"),
    ("policies:\n  notify: [{kinds: [alert]}]\n" + POD, "2:12: policies.notify[0]: a notify item needs one of desktop, webhook or command"),
    ("policies:\n  notify: [{webhook: hooks.example.com/x}]\n" + POD,
     "2:22: policies.notify[0].webhook: expected an http:// or https:// URL, got 'hooks.example.com/x'; add https:// in front"),
    ("policies:\n  notify: [{webhook: 'ftp://x/y'}]\n" + POD, "policies.notify[0].webhook: expected an http:// or https:// URL, got 'ftp://x/y'"),
    ("policies:\n  notify: [{command: ''}]\n" + POD, "policies.notify[0].command: expected a shell command, got an empty string"),
    ("policies:\n  notify: [{url: 'https://x'}]\n" + POD, "policies.notify[0].url: unknown key 'url'; did you mean 'webhook'?"),
    ("policies:\n  notify: [{desktop: true, kinds: [alerts]}]\n" + POD,
     "2:36: policies.notify[0].kinds[0]: unknown event kind 'alerts'; did you mean 'alert'?"),
    ("policies:\n  notify: [{desktop: true, kinds: []}]\n" + POD, "policies.notify[0].kinds: an empty list would send nothing"),
    ("policies:\n  notify: [pager]\n" + POD, "2:12: policies.notify[0]: expected desktop, {webhook: URL} or {command: \"...\"}, got 'pager'"),
    ("policies:\n  notify: [webhook]\n" + POD, "policies.notify[0]: webhook needs its target: write {webhook: https://...}"),
    ("policies:\n  notify: 'https://x/y'\n" + POD, "policies.notify: expected desktop, {webhook: URL} or {command: \"...\"}, got 'https://x/y'; write {webhook: https://x/y}"),
    # download_dir, checkpoint_interval_s
    ("policies: {download_dir: 'c/{pod}/{run}'}\n" + POD,
     "1:26: policies.download_dir: unknown placeholder {run}; only {pod} and {session} are filled in "
     "(did you mean {session} for {run}?)"),
    ("policies: {download_dir: 'c/{date}/{pod!r}'}\n" + POD, "policies.download_dir: unknown placeholders {date}, {pod!r}"),
    ("policies: {download_dir: 'c/{pod'}\n" + POD, "policies.download_dir: has an unmatched brace"),
    ("policies: {download_dir: ''}\n" + POD, "policies.download_dir: expected a directory (it may contain {pod} and {session}), got an empty string"),
    ("policies: {checkpoint_interval_s: 0}\n" + POD, "1:35: policies.checkpoint_interval_s: expected a number of seconds greater than 0, got 0"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS, ids=[row[1].split(": ", 2)[-2][:60] for row in ERRORS])
def test_error_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    lines = error_lines(tmp_path, text)
    assert len(lines) == 1, "\n".join(lines)
    path = str(tmp_path / "config.yaml")
    assert lines[0].startswith(f"{path}:"), lines[0]
    if expected[0].isdigit():
        assert lines[0].startswith(f"{path}:{expected}"), lines[0]
    else:
        assert f": {expected}" in lines[0], lines[0]


def test_every_problem_in_every_block_is_reported_in_one_pass(tmp_path: Path) -> None:
    lines = error_lines(tmp_path, """\
        policies:
          auto_download: sometimes
          alerts: {temp: 85, loss_spike: 0.5}
          budget: {action: shutdown}
        pods:
          - name: a
            host: h
            policies:
              notify: [desktop, {webhook: x, command: y}]
            sessions:
              - name: t
                policies: {keep_local: -1, download_dir: '{pod}/{when}', colour: 1}
    """)
    path = tmp_path / "config.yaml"
    assert lines == [
        f"{path}:2:18: policies.auto_download: expected newest, all or off, got 'sometimes'",
        f"{path}:3:12: policies.alerts.temp: unknown key 'temp'; did you mean 'gpu_temp_c'?",
        f"{path}:3:34: policies.alerts.loss_spike: expected a factor greater than 1.0 "
        "(the loss jumping to that many times its recent level), or off, got 0.5",
        f"{path}:4:11: policies.budget: budget needs max_usd (the spending limit in US dollars, "
        "e.g. {max_usd: 120, action: stop})",
        f"{path}:4:20: policies.budget.action: expected stop, teardown or alert, got 'shutdown'; did you mean 'stop'?",
        f"{path}:9:25: pods[0] (a).policies.notify[1]: a notify item is one of desktop, webhook or command, "
        "and this one has webhook and command; make each its own list item",
        f"{path}:12:32: pods[0] (a).sessions[0] (t).policies.keep_local: expected a whole number of copies "
        "greater than 0 (or off to keep all), got -1",
        f"{path}:12:50: pods[0] (a).sessions[0] (t).policies.download_dir: unknown placeholder {{when}}; "
        "only {pod} and {session} are filled in",
        f"{path}:12:66: pods[0] (a).sessions[0] (t).policies.colour: unknown key 'colour'; valid keys here: "
        "auto_download, keep_local, auto_resume, alerts, budget, notify, download_dir, checkpoint_interval_s",
    ]


def test_a_budget_tweak_is_fine_when_an_outer_layer_sets_max_usd(tmp_path: Path) -> None:
    config = parse(tmp_path, """\
        policies: {budget: {max_usd: 50}}
        pods:
          - name: a
            host: h
            policies: {budget: {grace_minutes: 0}}
            sessions: [{name: t, policies: {budget: {action: teardown}}}]
    """)
    assert policies_for(config, config.pods[0], "t").budget == Budget(50.0, "teardown", 0.0)


def test_merge_keys_share_a_policies_block(tmp_path: Path) -> None:
    config = parse(tmp_path, """\
        pods:
          - name: a
            host: h
            policies: &shared {auto_download: newest, budget: {action: stop}}
          - name: b
            host: h
            policies: {<<: *shared, keep_local: 2}
        policies: {budget: {max_usd: 10}}
    """)
    assert policies_for(config, config.pod("b")).budget == Budget(10.0, "stop", 15.0)
    assert config.pod("b").policies.keep_local == 2
    assert config.pod("b").policies.auto_download == "newest"


# --- gpuctl config check -------------------------------------------------------------


def test_config_check_describes_policies_at_every_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, LAYERED)
    assert main(["--config", str(path), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert ("Policies: auto_download newest, keep_local 3, auto_resume on (max 5 restarts, backoff 60s), "
            "alerts (gpu_temp_c 85°C, stall_minutes 15min, loss_spike 3x), budget $120 then alert, "
            "notify desktop") in out
    assert "  policies    keep_local all, alerts (gpu_temp_c 80°C, disk_used_pct off), budget then teardown, notify command" in out
    assert "(policies: auto_download all, auto_resume off, alerts (gpu_temp_c off, stall_minutes 60min))" in out
    assert "  policies    auto_resume on (max 1 restart), budget off" in out


def test_config_check_never_prints_notify_targets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        policies:
          notify: [{webhook: "https://hooks.example.com/T0/SECRET"}, {command: "curl -H 'token: SECRET2' x"}]
        pods: [{name: a, host: h}]
    """))
    text = describe_config(config)
    assert "Policies: notify webhook, command" in text
    assert "SECRET" not in text


def test_config_check_fails_with_the_policy_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "policies:\n  budget: {max_usd: 10, action: shutdown}\npods: [{name: a, host: h}]\n")
    assert main(["--config", str(path), "config", "check"]) != 0
    captured = capsys.readouterr()
    assert f"{path}:2:33: policies.budget.action: expected stop, teardown or alert, got 'shutdown'" in captured.err + captured.out
