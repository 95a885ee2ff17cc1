"""Names gpuctl checks before anything reaches a pod: tmux session names and relative paths.

They live here, under config, because `config check` applies them to the file as it is
read, and the tmux and checkpoint modules (which import config) apply the same rules
when they act: one rule, one place, no import cycle.
"""

from __future__ import annotations

_SEPARATORS = ".:"
"""Characters tmux 3.x turns into `_` in a new session's name (tmux 2.x refuses
them): they separate session, window and pane in a target."""

_ESCAPED = "\\$"
"""Characters tmux 3.3a stores backslash-escaped in a new session's name (its
`utf8_stravis`, as are the non-printable ones)."""


class UnsafeName(ValueError):
    """A checkpoint name or glob that is absolute or climbs out with `..`."""


def tmux_name_problem(name: str, *, existing: bool = False) -> str | None:
    """Why tmux would not keep `name` as a session's name, or None when it would.

    The one place that knows what tmux does to a name. With `existing=False` (a
    session gpuctl would create: launch, the config check) every rewrite counts:
    tmux 3.3a turns `.` and `:` into `_`, format-expands `#` (`#{...}`, `#(...)`
    even runs a command), and escapes `\\`, `$` and non-printable characters. A
    launched `a.b` would become `a_b`, the name of another session.

    With `existing=True` (looking up a session that may exist: kill, attach, state,
    adopt) only names no tmux session can have count: empty, or holding `.` or `:`.
    A name with `#` or `\\` can exist (tmux stored it so, or it was made with
    `##`), and a target `=NAME` is matched literally.

    The sentence says what tmux would do and how to avoid it.
    """
    if not name:
        return "a tmux session name cannot be empty"
    if any(c in _SEPARATORS for c in name):
        stored = "".join("_" if c in _SEPARATORS else c for c in name)
        if existing:
            return (f"no tmux session can be named {name!r}: tmux stores '.' and ':' as '_' "
                    f"(a session created as {name!r} is named {stored!r}: use that name)")
        return (f"tmux would name the session {stored!r}, not {name!r} ('.' and ':' separate "
                "windows and panes in tmux targets), and that name may be another session's; "
                "use a name without '.' or ':'")
    if existing:
        return None
    if "#" in name:
        return f"tmux would expand '#' in {name!r} as a format (and run `#(...)`); use a name without '#'"
    odd = sorted({c for c in name if c in _ESCAPED or not c.isprintable()})
    if odd:
        shown = ", ".join(repr(c) for c in odd)
        return f"tmux would store {name!r} with {shown} escaped, so it would not find it by that name"
    return None


def check_relative(name: str, what: str = "checkpoint name") -> str:
    """`name` if it is a relative path that stays inside its base, else `UnsafeName`."""
    if not name or "\0" in name:
        raise UnsafeName(f"{what} {name!r} is empty or holds a NUL byte")
    if name.startswith("/"):
        raise UnsafeName(f"{what} {name!r} is absolute; gpuctl takes paths relative to the workdir")
    if ".." in name.split("/"):
        raise UnsafeName(f"{what} {name!r} contains '..'; gpuctl refuses paths that leave their folder")
    return name
