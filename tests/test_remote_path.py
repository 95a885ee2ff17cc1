import subprocess

import pytest

from backends.remote_path import quote_path


@pytest.mark.parametrize("path, expected", [
    ("~", "~"),
    ("~/logs/train.log", "~/logs/train.log"),
    ("~/a b/it's.log", "~/'a b/it'\"'\"'s.log'"),
    ("/abs/x y", "'/abs/x y'"),
    ("rel/$(reboot)", "'rel/$(reboot)'"),
    ("~root/x", "~root/x"),
    ("~$(id)/x", "'~$(id)/x'"),
    ("~/my data", "~/'my data'"),
    ("~bob/x y", "~bob/'x y'"),
    ("/abs/path", "/abs/path"),
    ("/a b/$(reboot)", "'/a b/$(reboot)'"),
    ("~$(reboot)", "'~$(reboot)'"),
    ("~/`reboot`", "~/'`reboot`'"),
])
def test_quote_path(path, expected):
    assert quote_path(path) == expected


def test_the_shell_expands_the_tilde_and_nothing_else(tmp_path):
    out = subprocess.run(["sh", "-c", f"printf '%s' {quote_path('~/a b/$(echo no)')}"],
                         capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.stdout == f"{tmp_path}/a b/$(echo no)"
