"""Finding the system programs the real-component tests need (sshd, tmux, ...)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

#: Where system programs live; sshd is in /usr/sbin, which a non-root PATH often lacks.
SYSTEM_PATH: tuple[str, ...] = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)

INSTALL_HINT = (
    "install them with: apt-get install -y openssh-server openssh-client tmux rsync "
    "(./scripts/test does this itself when run as root)"
)


class ToolMissingError(RuntimeError):
    """A program the tests need is not installed.

    Attributes:
        missing: the program names that were not found.
    """

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(f"missing {', '.join(self.missing)}; {INSTALL_HINT}")


def find_tool(name: str, *, system_only: bool = False) -> str | None:
    """Absolute path of a program, from ``PATH`` and then :data:`SYSTEM_PATH`.

    Args:
        name: the program, e.g. ``"sshd"``.
        system_only: look only in :data:`SYSTEM_PATH` (what a pod's PATH holds),
            ignoring this process's ``PATH`` (a virtualenv, pyenv shims).
    """
    dirs = list(SYSTEM_PATH)
    if not system_only:
        dirs = os.environ.get("PATH", "").split(os.pathsep) + dirs
    found = shutil.which(name, path=os.pathsep.join(d for d in dirs if d))
    return os.path.abspath(found) if found else None


def missing_tools(*names: str) -> list[str]:
    """The names among ``names`` that :func:`find_tool` cannot find."""
    return [name for name in names if find_tool(name) is None]
