"""One glob pattern written alone where a list of them is expected (issue 16, item 10).

`checkpoints: "out/checkpoint-*"` means exactly one thing, so it is read as the
one-item list instead of being refused; what the file gets wrong inside such a string is
still said with its line and field (no `[0]`: there is no list to index).
"""

from __future__ import annotations

import pytest

from sessions.config.loader import ConfigError, parse_config

POD = "pods:\n  - name: a\n    host: h\n    sessions:\n      - name: t\n"


def session(text: str):
    return parse_config(POD + text, "/x/config.yaml").pod("a").session("t")


@pytest.mark.parametrize("written", [
    '        checkpoints: "out/checkpoint-*"\n',
    "        checkpoints: out/checkpoint-*\n",
    "        checkpoints: ['out/checkpoint-*']\n",
    "        checkpoints:\n          - out/checkpoint-*\n",
], ids=["quoted-string", "plain-string", "flow-list", "block-list"])
def test_one_pattern_as_a_string_is_the_one_item_list(written):
    assert session(written).checkpoints == ("out/checkpoint-*",)


def test_a_list_still_keeps_every_pattern_in_order():
    assert session("        checkpoints: [b/*.pt, a/*.pt]\n").checkpoints == ("b/*.pt", "a/*.pt")


@pytest.mark.parametrize("written, message", [
    ('        checkpoints: "/abs/ckpt-*"\n', "checkpoints glob '/abs/ckpt-*' is absolute"),
    ('        checkpoints: "../up/*"\n', "contains '..'"),
    ('        checkpoints: ""\n', "expected a glob pattern, got an empty string"),
], ids=["absolute", "dotdot", "empty"])
def test_a_wrong_string_pattern_is_refused_with_its_own_field(written, message):
    with pytest.raises(ConfigError) as info:
        session(written)
    [problem] = info.value.problems
    assert (problem.line, problem.field) == (6, "pods[0] (a).sessions[0] (t).checkpoints")
    assert message in problem.message
