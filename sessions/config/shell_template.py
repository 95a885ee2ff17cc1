"""The one renderer for shell command templates: `resume:` and `notify` commands.

A template such as `python train.py --ckpt="{checkpoint}/model.pt"` is shell code the
user wrote; the values that fill it (a checkpoint path named by whatever runs on the
pod, an event message quoting pod text) are not. Pasting a value into the text, even
shell-quoted, only works where the quoting around it is known: inside someone's own
`"…"` or `$(…)` a quoted value is not quoted any more, and a file named
`step_6";touch x;"x.pt` ran as code. So values never enter the command text at all:

* each known `{name}` becomes a reference to the environment variable `GPUCTL_NAME`
  (`{checkpoint}` -> `$GPUCTL_CHECKPOINT`), and the caller puts the values in that
  environment (`exports` for a command run on a pod, `environment` for a local
  process). The shell expands a variable exactly once and never parses the result as
  code, so no value can end a quote or start a command;
* which reference is written depends on where the placeholder stands, found with a
  small scanner of the shell's quoting rules (`render`):

  - unquoted, or the whole of a quoted word (`{x}`, `'{x}'`, `"{x}"`), also inside
    `$(…)` at any depth: `"$GPUCTL_X"`, one word, no splitting or globbing;
  - inside double quotes with other text (`--ckpt="{checkpoint}/model.pt"`):
    `${GPUCTL_X}`, which the surrounding quotes already protect;
  - inside single quotes with other text (`'says: {message}!'`, `bash -c 'python
    train.py {checkpoint}'`): refused (`TemplateError`). The outer shell does not
    expand anything there, and the text is as often data (printf's argument) as code
    for another shell (`bash -c`, `ssh host`); splicing the value in is right for the
    first and runs it in the second, while writing `"$GPUCTL_X"` there is safe for
    both but silently wrong for data. The error says how to write either one;
  - inside backticks, `$((…))` or `${…}`: refused, with the replacement to write
    (`$(…)`, or the variable itself).

* A placeholder in a word that some program will run as code is refused too, since
  even a correctly expanded value is parsed there: the word after an interpreter's
  option ending in `c` or `e` (`bash -c`, `bash -lc`, `python -u -c`, `osascript -e`,
  `perl -e`; not `python train.py -c X`, where `-c` is the script's), and any argument
  of `eval`, `ssh`, `su` or `watch`, which join their arguments into a shell command. This is a list of the cases we know, not a proof: code a template hands to
  an interpreter some other way should read the variable itself (`"$GPUCTL_X"` in
  shell, `os.environ["GPUCTL_X"]` in Python), which is always safe.

`{name}` after `$` (`${name}`), after a backslash, and names not in the caller's list
stay as written; so do comments.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from yaml.nodes import Node

from sessions.config.fields import INVALID, Checker, Validator, nonempty

RESUME_PLACEHOLDERS: tuple[str, ...] = ("checkpoint",)
"""What a session's `resume:` template may use: the chosen checkpoint's pod path."""
NOTIFY_PLACEHOLDERS: tuple[str, ...] = ("message", "kind", "pod", "session", "ts")
"""What a `notify` command template may use: the event's fields (`ts`: unix seconds)."""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_CODE_OPTION = re.compile(r"-[A-Za-z]*[ce]|--command|--eval|--execute")
_INTERPRETER = re.compile(r"(ba|da|z|k|fi|tc|c)?sh|python[0-9.]*|pypy[0-9.]*|perl|ruby|node|osascript|lua|php|julia")
_JOINERS = frozenset({"eval", "ssh", "su", "watch"})

# Scanner frames: a command list (the top level or a `$(…)`) and the quoted contexts.
_CMD, _SQ, _DQ, _BT, _PARAM, _ARITH = "command", "'", '"', "`", "${", "$(("
_OPEN = {_SQ: "'…'", _DQ: '"…"', _BT: "`…`", _PARAM: "${…}", _ARITH: "$((…))", _CMD: "$(…)"}


class TemplateError(ValueError):
    """A placeholder stands where gpuctl cannot pass its value safely; says how to write it."""


def env_name(name: str) -> str:
    """The environment variable that carries placeholder `{name}`: `GPUCTL_NAME`."""
    return "GPUCTL_" + name.upper()


def environment(values: Mapping[str, str]) -> dict[str, str]:
    """`values` as the environment variables `render`'s references read.

    A NUL cannot be in an environment variable (nor in a shell string), so it is
    written as the four characters `\\x00` rather than failing the whole delivery.
    """
    return {env_name(key): value.replace("\0", "\\x00") for key, value in values.items()}


def exports(values: Mapping[str, str]) -> str:
    """`export GPUCTL_X=<quoted value>; ` for each value: the prefix that gives a command
    run by a shell elsewhere (on a pod) the values `render`'s references read."""
    return "".join(f"export {key}={shlex.quote(value)}; " for key, value in environment(values).items())


def fill(template: str, values: Mapping[str, str]) -> str:
    """A self-contained command: the values exported, then the rendered template."""
    return exports(values) + render(template, values)


def check(template: str, names: Collection[str]) -> str | None:
    """Why `template` cannot be rendered (one sentence for `config check`), or None."""
    try:
        render(template, names)
    except TemplateError as exc:
        return str(exc)
    return None


def field(names: Collection[str], what: str = "text") -> Validator:
    """A config validator for a template field (`resume:`, a notify `command:`): non-empty
    text that `render` accepts, else a problem at the field's file:line saying why."""

    def validate(ck: Checker, node: Node, where: str) -> Any:
        value = nonempty(ck, node, where, what)
        if value is INVALID:
            return value
        problem = check(value, names)
        return value if problem is None else ck.problem(node, where, problem)

    return validate


class _Frame:
    """One nesting level of the scan: its kind, and for command lists the words so far."""

    __slots__ = ("depth", "kind", "start", "word", "words")

    def __init__(self, kind: str, start: int, depth: int = 0) -> None:
        self.kind, self.start, self.depth = kind, start, depth
        self.words: list[str] = []   # the finished words of the current simple command
        self.word: str | None = None  # the word being read ("\0" marks nested parts)

    def end_word(self, new_command: bool = False) -> None:
        if self.word is not None:
            self.words.append(self.word)
            self.word = None
        if new_command:
            self.words = []

    def add(self, text: str) -> None:
        self.word = (self.word or "") + text


def _refuse_code(stack: list[_Frame], name: str) -> None:
    """Raise when the placeholder's word (at any nesting level) is run as code."""
    for frame in stack:
        if frame.kind != _CMD:
            continue
        words = frame.words
        joiner = next((w for w in words if w.rsplit("/", 1)[-1] in _JOINERS), None)
        option = words[-1] if words and _CODE_OPTION.fullmatch(words[-1]) and _interpreter_option(words) else None
        if not (joiner or option):
            continue
        var = env_name(name)
        by = f"an argument of {joiner!r}" if joiner else f"the word after {option!r}"
        problem = (f"{{{name}}} is {by}, which is run as code, so a value holding quotes, `;` or $(…) "
                   "would run as commands. ")
        if joiner == "ssh":  # the other machine's shell does not get gpuctl's environment
            raise TemplateError(problem + f"Send it on stdin instead: printf '%s' {{{name}}} | ssh HOST "
                                          "'notify-send \"$(cat)\"'")
        raise TemplateError(problem + f"Read it from the environment inside that code instead: \"${var}\" "
                                      f"in a shell, os.environ[\"{var}\"] in Python (gpuctl sets {var})")


def _interpreter_option(words: list[str]) -> bool:
    """Whether the last word is an option of an interpreter (`bash -lc`, `python -u -c`,
    `docker exec box sh -c`): an interpreter word followed by options only. After a
    script (`python train.py -c X`) the option is the script's, and `-c` may well mean
    `--checkpoint` there."""
    for k in range(len(words) - 2, -1, -1):
        if _INTERPRETER.fullmatch(words[k].rsplit("/", 1)[-1]):
            return True
        if not words[k].startswith("-"):
            return False
    return False


def render(template: str, names: Collection[str]) -> str:
    """`template` with each `{name}` of `names` replaced by a reference to `GPUCTL_NAME`.

    No value is needed: the text never holds one (see the module docstring for which
    reference goes where and what is refused).

    Raises:
        TemplateError: a placeholder where its value cannot be passed safely, or a quote
            (or `$(`, backtick) left open in a template that has placeholders.
    """
    if not any(m.group(1) in names for m in _PLACEHOLDER.finditer(template)):
        return template  # nothing to fill: the template is the user's business alone
    out: list[str] = []
    stack = [_Frame(_CMD, 0)]
    i, n = 0, len(template)

    def refuse(name: str, where: str, instead: str) -> NoReturn:
        raise TemplateError(f"{{{name}}} cannot stand inside {where}: {instead}")

    while i < n:
        frame, ch = stack[-1], template[i]
        match = _PLACEHOLDER.match(template, i)
        name = match.group(1) if match and match.group(1) in names and not template.endswith("$", 0, i) else None
        var = env_name(name) if name else ""
        if frame.kind == _CMD:
            if name:
                _refuse_code(stack, name)
                out.append(f'"${var}"')
                frame.add("\0")
                i = match.end()  # type: ignore[union-attr]
                continue
            if ch in "'\"":
                whole = _PLACEHOLDER.match(template, i + 1)
                if whole and whole.group(1) in names and template.startswith(ch, whole.end()):
                    _refuse_code(stack, whole.group(1))
                    out.append(f'"${env_name(whole.group(1))}"')
                    frame.add("\0")
                    i = whole.end() + 1
                    continue
                stack.append(_Frame(ch, i))
                frame.add("\0")
                out.append(ch)
                i += 1
                continue
            if ch == "#" and frame.word is None:  # a comment runs to the end of the line
                end = template.find("\n", i)
                end = n if end < 0 else end
                out.append(template[i:end])
                i = end
                continue
            if ch in " \t":
                frame.end_word()
            elif ch in "\n;&|":
                frame.end_word(new_command=True)
            elif ch == "(":
                frame.end_word(new_command=True)
                frame.depth += 1
            elif ch == ")":
                frame.end_word(new_command=True)
                if frame.depth:
                    frame.depth -= 1
                elif len(stack) > 1:
                    stack.pop()  # the end of a `$(…)`
            elif ch in "<>":
                frame.end_word()
            elif ch == "\\":
                out.append(template[i:i + 2])
                frame.add(template[i:i + 2])
                i += 2
                continue
            elif ch in "$`":
                pushed = _open_expansion(template, i, stack)
                if pushed:
                    frame.add("\0")
                    out.append(template[i:i + pushed])
                    i += pushed
                    continue
                frame.add(ch)
            else:
                frame.add(ch)
            out.append(ch)
            i += 1
            continue
        if name:
            if frame.kind == _DQ:
                _refuse_code(stack, name)
                out.append(f"${{{var}}}")
                i = match.end()  # type: ignore[union-attr]
                continue
            if frame.kind == _SQ:
                refuse(name, "'…' together with other text",
                       "gpuctl cannot tell whether that text is data or code another shell runs "
                       f"(bash -c '…'). For data, close the quotes around it ('text '{{{name}}}' text'); "
                       f"in code another shell runs, write \"${var}\" there instead, which that shell "
                       f"reads from its environment (gpuctl sets {var})")
            if frame.kind == _BT:
                refuse(name, "backticks", "write $(…) instead of `…` around it")
            refuse(name, _OPEN[frame.kind], f"write ${var} there instead (gpuctl sets {var})")
        if frame.kind == _SQ:
            if ch == "'":
                stack.pop()
        elif ch == "\\":
            out.append(template[i:i + 2])
            i += 2
            continue
        elif frame.kind == _DQ:
            if ch == '"':
                stack.pop()
            elif ch in "$`":
                pushed = _open_expansion(template, i, stack)
                if pushed:
                    out.append(template[i:i + pushed])
                    i += pushed
                    continue
        elif (frame.kind, ch) in ((_BT, "`"), (_PARAM, "}")):
            stack.pop()
        elif frame.kind == _ARITH and ch in "()":
            frame.depth += 1 if ch == "(" else -1
            if frame.depth == 0:
                stack.pop()
        out.append(ch)
        i += 1
    if len(stack) > 1:
        frame = stack[-1]
        raise TemplateError(f"the {_OPEN[frame.kind]} opened at character {frame.start + 1} is never closed")
    return "".join(out)


def _open_expansion(template: str, i: int, stack: list[_Frame]) -> int:
    """At a `$` or backtick: push the frame it opens and return how many characters
    opened it, or 0 when it opens nothing (`$HOME`, a lone `$`)."""
    if template.startswith("`", i):
        stack.append(_Frame(_BT, i))
        return 1
    if template.startswith("$((", i):
        stack.append(_Frame(_ARITH, i, depth=2))
        return 3
    if template.startswith("$(", i):
        stack.append(_Frame(_CMD, i))
        return 2
    if template.startswith("${", i):
        stack.append(_Frame(_PARAM, i))
        return 2
    return 0
