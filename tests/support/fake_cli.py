"""Fake `aws`, `gcloud`, `az`, `sky`, `dstack` executables that record their argv.

`FakeCli(tmp_path).install("aws")` writes an executable named `aws` into a bin
directory (put it first on PATH). Each run appends its argv as a JSON line to
`<name>.argv` and answers with the first rule whose every `match` word is in argv:
`fake.answer("aws", ["describe-instances"], stdout=json.dumps(...))`. With no matching
rule it exits 0 printing nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

_SCRIPT = """#!{python}
import json, os, sys
here = {here!r}
name = {name!r}
with open(os.path.join(here, name + ".argv"), "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
try:
    rules = json.load(open(os.path.join(here, name + ".rules.json")))
except FileNotFoundError:
    rules = []
for rule in rules:
    if all(word in sys.argv[1:] for word in rule["match"]):
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("code", 0))
"""


class FakeCli:
    """A directory of fake CLIs; `bin` goes first on PATH."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "fake-bin"
        self.bin.mkdir(parents=True, exist_ok=True)

    def install(self, name: str) -> Path:
        path = self.bin / name
        path.write_text(_SCRIPT.format(python=sys.executable, here=str(self.bin), name=name))
        path.chmod(0o755)
        return path

    def answer(self, name: str, match: list[str], *, stdout: Any = "", stderr: str = "", code: int = 0) -> None:
        """Add a rule (rules are tried in the order added)."""
        rules_file = self.bin / f"{name}.rules.json"
        rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
        text = stdout if isinstance(stdout, str) else json.dumps(stdout)
        rules.append({"match": match, "stdout": text, "stderr": stderr, "code": code})
        rules_file.write_text(json.dumps(rules))

    def argvs(self, name: str) -> list[list[str]]:
        """Every argv the fake `name` was run with, in order."""
        path = self.bin / f"{name}.argv"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def path_env(self) -> str:
        return f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
