"""YAML read as a node tree that remembers where every key and value came from.

`yaml.safe_load` returns plain dicts and lists, which forget their line numbers and
silently keep the last of two duplicate keys. Config messages must say "line 12,
column 5", so the config reader works on the composed node tree instead, and this
module holds the few node helpers it needs: composing with a readable syntax error,
positions, mapping entries (with duplicate keys reported and `<<` merge keys applied),
scalar values, and a plain frozen conversion for sections kept raw.

Composing is bounded (`_BoundedLoader`), because the validators walk what aliases
name once per reference and recurse per level: a 484-byte merge-key bomb took 22 s,
a 1,000-deep list hit Python's recursion limit. Limits are checked while composing,
so the cost of reading stays linear in the text whatever it holds.

Nothing here knows the config schema; it reports `Issue`s (node, message, key) and lets
the caller word the field path.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"


class Issue(NamedTuple):
    """Something wrong found while reading nodes.

    Attributes:
        node: where it is.
        message: what is wrong.
        key: the mapping key it concerns (for the field path), or None.
    """

    node: Node
    message: str
    key: str | None = None


class YamlSyntaxError(Exception):
    """The text is not valid YAML.

    Attributes:
        message: what the parser objected to, in one line.
        line: 1-based line of the problem, or None when the parser gave no position.
        column: 1-based column, or None.
        field: where in the document (`pods[0].host`), "" when unknown or the whole file.
    """

    def __init__(self, message: str, line: int | None, column: int | None, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.field = field


class YamlRefused(YamlSyntaxError):
    """Valid YAML that gpuctl will not read: it is built to exhaust time or memory
    (aliases that multiply, nesting deeper than any config needs) or holds a value no
    program can print (a lone UTF-16 surrogate)."""


MAX_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases expanded. A config needs about ten
levels (policies inside a session inside a pod); the limit sits far below Python's
recursion limit, which a few hundred `[` would otherwise reach with a traceback."""

MAX_ALIAS_VALUES = 50_000
"""Most values that aliases (`*name`, `<<: *name`) may add to the document, counted as
if every alias were a copy of what it names. A `defaults` anchor merged into 200 pods
adds a few thousand; nine anchors each naming the previous one nine times (484 bytes,
a "billion laughs") would add 9**9 and took minutes to validate."""


MAX_VALUES = 50_000
"""Most values (scalars, lists, mappings) a document may write out. Hundreds of pods
with sessions and policies take a few thousand; PyYAML here is pure Python (~70 µs a
value), so the bound keeps a wrong file within the 1 MiB size limit (a flat list of
500,000 numbers took a minute) to a few seconds and a readable number of problems."""

_SURROGATE = re.compile("[\ud800-\udfff]")
"""Reachable only through escapes (`"\\ud800"`): a UTF-8 file cannot hold one, and
PyYAML's reader refuses them in the text itself."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what `MAX_DEPTH`, `MAX_VALUES`, `MAX_ALIAS_VALUES`
    and the surrogate rule forbid while it composes, before anything walks the tree.

    Every node's expanded size and height are recorded when it is complete, so an
    alias costs one lookup: the work stays linear in the text whatever the aliases
    multiply to. An alias to a node still being composed (a recursive structure)
    counts as one value; the validators report the cycle itself.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | int] = []
        self._measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
        self._alias_values = 0
        self._values = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        mark = self.peek_event().start_mark
        alias = self.check_event(AliasEvent)
        self._path.append(_step(parent, index))
        try:
            if len(self._path) > MAX_DEPTH:
                self._refuse(mark, f"lists and mappings nest deeper than {MAX_DEPTH} levels here; "
                                   "a gpuctl config needs about ten")
            if not alias:
                self._values += 1
                if self._values > MAX_VALUES:
                    self._refuse(mark, f"the document holds more than {MAX_VALUES:,} values; gpuctl "
                                       "reads configs up to that size (hundreds of pods take a few thousand)")
            node = super().compose_node(parent, index)
            assert node is not None  # PyYAML's stubs allow None; compose_node returns a node or raises
            if alias:
                self._count_alias(node, mark)
            else:
                self._measure[id(node)] = self._measured(node)
        finally:
            self._path.pop()
        return node

    def _measured(self, node: Node) -> tuple[int, int]:
        if isinstance(node, ScalarNode):
            surrogate = _SURROGATE.search(node.value)
            if surrogate is not None:
                self._refuse(node.start_mark,
                             f"holds \\u{ord(surrogate.group()):04x}, half of a UTF-16 surrogate pair and not a "
                             "character on its own; write the character itself (the file is UTF-8)")
            return 1, 1
        children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
        measures = [self._measure.get(id(child), (1, 1)) for child in children]
        size = 1 + sum(size for size, _ in measures)
        height = 1 + max((height for _, height in measures), default=0)
        return min(size, MAX_ALIAS_VALUES + 1), height

    def _count_alias(self, node: Node, mark: yaml.Mark) -> None:
        size, height = self._measure.get(id(node), (1, 1))
        self._alias_values += size
        if self._alias_values > MAX_ALIAS_VALUES:
            self._refuse(mark, f"aliases here expand the document past {MAX_ALIAS_VALUES:,} values "
                               "(anchors that repeat each other, a 'billion laughs'); write the "
                               "repeated parts out or reuse them fewer times")
        if len(self._path) - 1 + height > MAX_DEPTH:
            self._refuse(mark, f"this alias nests lists and mappings deeper than {MAX_DEPTH} levels; "
                               "a gpuctl config needs about ten")

    def _refuse(self, mark: yaml.Mark, message: str) -> None:
        raise YamlRefused(message, mark.line + 1, mark.column + 1, _field(self._path))


def _step(parent: Node | None, index: Any) -> str | int:
    """One step of a field path, from what PyYAML's composer passes to `compose_node`:
    the key node for a mapping's value, None for the key itself, the position in a list."""
    if parent is None:
        return ""
    if isinstance(index, int):
        return index
    if isinstance(index, ScalarNode):
        return index.value
    return "(a key)" if index is None else "(a complex key)"


def _field(path: list[str | int]) -> str:
    """`pods[0].host` for ["", "pods", 0, "host"]; a deep path keeps its first steps."""
    steps = [step for step in path if step != ""]
    shown = steps[:8]
    text = ""
    for step in shown:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text + ("..." if len(steps) > len(shown) else "")


def compose(text: str) -> Node | None:
    """Parse `text` into a node tree (None for an empty or comment-only document).

    Raises:
        YamlSyntaxError: with the parser's own position, so the message can point at
            the exact line and column instead of dumping PyYAML's multi-line report.
        YamlRefused: (a YamlSyntaxError) for more than `MAX_VALUES` values, aliases
            that multiply past `MAX_ALIAS_VALUES`, nesting past `MAX_DEPTH`, or a lone
            surrogate.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc) from None
    except yaml.reader.ReaderError as exc:
        # Raised for characters YAML forbids (control characters); it carries a
        # character offset rather than a mark.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YamlSyntaxError(
            f"character {exc.character!r} is not allowed in YAML ({exc.reason})", line, column
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises the two above
        raise YamlSyntaxError(str(exc).replace("\n", " "), None, None) from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError) -> YamlSyntaxError:
    """Word a PyYAML error as one line and add hints for the mistakes people make."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    message = problem
    if exc.context and exc.problem and exc.context_mark is not None:
        message = f"{problem} ({exc.context} on line {exc.context_mark.line + 1})"
    if "'\\t'" in problem:
        message += "; YAML does not allow tabs for indentation, use spaces"
    elif "expected a single document" in (exc.context or "") + problem:
        message = "the file holds more than one YAML document (a second '---'); gpuctl reads one"
    elif problem.startswith("found unknown escape character"):
        message += (
            "; inside double quotes YAML reads backslashes as escapes, so write regular"
            " expressions and Windows paths in single quotes"
        )
    elif problem.startswith("mapping values are not allowed"):
        message += "; check the indentation, or quote a value that contains ': '"
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return YamlSyntaxError(message, line, column)


def line_of(node: Node) -> int:
    """1-based line where `node` starts."""
    return node.start_mark.line + 1


def column_of(node: Node) -> int:
    """1-based column where `node` starts."""
    return node.start_mark.column + 1


def is_null(node: Node) -> bool:
    """True for an empty value, `~` or `null`: the config treats it as "not set"."""
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


@dataclass(frozen=True)
class Entry:
    """One `key: value` pair of a mapping node.

    Attributes:
        key: the key's text exactly as written (`on:` stays "on", not True).
        key_node: the key's node, for messages about the key itself.
        value: the value's node.
    """

    key: str
    key_node: Node
    value: Node


def mapping_entries(
    node: MappingNode, _active: frozenset[int] = frozenset()
) -> tuple[list[Entry], list[Issue]]:
    """The entries of a mapping, plus issues found on the way.

    Keys are taken as written text, because every mapping in the config has string
    keys (env names, key bindings, field names) and YAML 1.1 would otherwise turn
    `on:` or `yes:` into booleans. A duplicate key is an issue at its second
    occurrence: PyYAML keeps only the last, which hides a typo'd copy-paste. `<<`
    merge keys are applied the way PyYAML applies them (explicit keys win; earlier
    merged mappings win over later ones), without calling that a duplicate.

    Returns:
        (entries in document order, [Issue, ...]). An issue inside a merged
        mapping may be reported once per merge; callers drop repeated issues.
    """
    active = _active | {id(node)}
    issues: list[Issue] = []
    explicit: list[Entry] = []
    merged: list[Entry] = []
    seen: dict[str, Node] = {}
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            merged.extend(_merge_entries(value_node, issues, active))
            continue
        if not isinstance(key_node, ScalarNode):
            issues.append(Issue(key_node, "a key must be plain text, not a list or a mapping"))
            continue
        key = key_node.value
        if key in seen:
            issues.append(
                Issue(
                    key_node,
                    f"duplicate key {key!r} (first set on line {line_of(seen[key])}); "
                    "YAML would silently keep only the last one",
                    key,
                )
            )
            continue
        seen[key] = key_node
        explicit.append(Entry(key, key_node, value_node))
    for entry in merged:
        if entry.key not in seen:
            seen[entry.key] = entry.key_node
            explicit.append(entry)
    return explicit, issues


def _merge_entries(value: Node, issues: list[Issue], active: frozenset[int]) -> list[Entry]:
    """Entries brought in by a `<<: *anchor` (or `<<: [*a, *b]`) merge key."""
    sources = value.value if isinstance(value, SequenceNode) else [value]
    out: list[Entry] = []
    for source in sources:
        if not isinstance(source, MappingNode):
            issues.append(Issue(source, "a '<<' merge key needs a mapping (or a list of mappings)"))
            continue
        if id(source) in active:
            issues.append(Issue(source, "a '<<' merge refers to itself"))
            continue
        entries, more = mapping_entries(source, active)
        issues.extend(more)
        out.extend(entries)
    return out


class ScalarError(ValueError):
    """A scalar YAML cannot turn into a value (an unknown `!tag`, `!!int abc`)."""


def scalar_value(node: ScalarNode) -> Any:
    """The Python value YAML's safe loader gives a scalar: str, int, float, bool, None...

    Raises:
        ScalarError: for a tag the safe loader does not know or a value its tag rejects.
    """
    constructor = yaml.constructor.SafeConstructor()
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
            raise ScalarError(exc.problem) from None
        raise ScalarError(f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}") from None


def frozen_value(node: Node, issues: list[Issue], _active: frozenset[int] = frozenset()) -> Any:
    """Convert a node to plain immutable data: mappings become read-only mappings,
    lists become tuples, scalars their YAML value.

    Used for sections the config keeps raw for a later validator (`policies`,
    provider options): they stay immutable like the rest of the config.
    """
    if id(node) in _active:
        issues.append(Issue(node, "this alias refers to itself; recursive structures are not allowed"))
        return None
    active = _active | {id(node)}
    if isinstance(node, MappingNode):
        entries, more = mapping_entries(node)
        issues.extend(more)
        return types.MappingProxyType({e.key: frozen_value(e.value, issues, active) for e in entries})
    if isinstance(node, SequenceNode):
        return tuple(frozen_value(item, issues, active) for item in node.value)
    try:
        return scalar_value(node)  # type: ignore[arg-type]
    except ScalarError as exc:
        issues.append(Issue(node, str(exc)))
        return None
