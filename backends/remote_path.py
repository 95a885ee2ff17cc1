"""Quote a remote path for a POSIX shell without losing `~` expansion.

`shlex.quote("~/x")` yields `'~/x'`, which the shell does not expand, so a config's
`~/.gpuctl/logs/train.log` would name a directory called `~`. The tilde prefix is
left bare (it can hold only a user name) and the rest is quoted.
"""

from __future__ import annotations

import re
import shlex

_TILDE = re.compile(r"^~([A-Za-z0-9._-]*)(?:/(.*))?$", re.DOTALL)


def quote_path(path: str) -> str:
    """`~/a b` -> `~/'a b'`; `/x y` -> `'/x y'`; `~user` -> `~user`."""
    match = _TILDE.match(path)
    if match is None:
        return shlex.quote(path)
    user, rest = match.group(1), match.group(2)
    return "~" + user + ("/" + shlex.quote(rest) if rest else "")
