"""Find a session's checkpoints on its pod: one remote listing, parsed, ordered, judged.

**Finding.** The session's `checkpoints:` globs (relative to its workdir), or
`DEFAULT_PATTERNS`, are expanded by the pod's shell in ONE exec (`listing_command`).
The globs travel as quoted words and are expanded from an unquoted variable, so the
shell does pathname expansion on them and nothing else (no `$(...)`, no `;`). For each
match it prints type, size, mtime and, for folders, the total size of the files inside,
the newest mtime inside and the completion markers; `parse_listing` reads it back.

**Order (newest first).** Checkpoints whose name carries a step (`checkpoint-500`,
`global_step500`, `step_500.pt`, `epoch=2-step=500.ckpt`) come first, highest step
first (mtime breaks ties); the rest (`best.pt`, `final.pt`, `*.safetensors`,
`epoch_3.pt`) follow, newest mtime first. Step-named checkpoints lead because they
are what a resume wants, and a `best.pt` rewritten a minute ago is not newer training
state than `step_900.pt`.

**`writing`.** A checkpoint is `writing`, and never offered for download or resume, when:

* a folder lacks its completion marker: Hugging Face's `checkpoint-N/` until
  `trainer_state.json` is in it (the Trainer writes it last); DeepSpeed's
  `global_stepN/` while the `latest` file beside it names an older step;
* its size or mtime differs between two listings `settle` seconds apart, both taken
  inside the one exec (the pod does the waiting: one round trip) -- or, when the caller
  passes `previous` (the TUI and `watch`, which list every few seconds anyway),
  between that earlier listing and this one, with no wait at all;
* its mtime is less than `fresh` seconds before the pod's clock at the listing (it
  was modified just now). This is what lets `download` and `resume` list once, with
  `settle=0`: a file being written has an mtime of "now". A download then checks that
  size and mtime did not move while it ran (see `sessions.checkpoints.download`).

A checkpoint that disappears between the two listings is left out.

**Names.** A checkpoint's `name` is its path relative to the workdir, as matched;
`path` is absolute on the pod (the workdir's physical path). Both keep every byte of
the pod's name: a byte that is not UTF-8 is a lone surrogate (`backends.ssh.
REMOTE_ERRORS`), so the same bytes go back when the pod is asked for the file; escape
a name before printing it. Globs that are absolute or climb out with `..` are refused,
and so is any match whose name does, or whose folder is physically outside the workdir
(a linked folder mid-glob: `ckpts/run1 -> /etc`). Symlinks among the matches
(`latest.pt -> step_900.pt`) are skipped: their targets are listed when a pattern
matches them. Matches inside a listed folder (`checkpoint-500/model.safetensors`)
belong to that folder and are not listed on their own.

**Whole or not at all.** The listing ends with an end record; output without it (a
dropped channel, a killed shell) is `CheckpointListingFailed`, never a shorter list:
a missing newer checkpoint would let teardown destroy it.

Needs GNU `find` (`-printf`), as on every Debian/Ubuntu/RHEL-based image. Past 400
lines on purpose: every command that reads checkpoint state on the pod (the listing,
one folder's files, one checkpoint's size and mtime) sits next to its parser, so the
quoting has one place to audit.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from sessions.config.model import PodConfig, SessionConfig
from sessions.config.names import UnsafeName, check_relative  # noqa: F401  (re-exported)
from sessions.tmux.commands import pod_dir

if TYPE_CHECKING:  # config validation imports this module and must not load asyncssh
    from backends.runner import Runner

FILE, DIR = "file", "dir"
COMPLETE, WRITING = "complete", "writing"

DEFAULT_PATTERNS: tuple[str, ...] = tuple(
    prefix + pattern
    for pattern in (
        "checkpoint-*",        # Hugging Face Trainer (folder)
        "global_step*",        # DeepSpeed (folder)
        "step_*.pt",
        "epoch_*.pt",
        "*step=*.ckpt",        # Lightning: epoch=E-step=N.ckpt, name-step=N.ckpt
        "last.ckpt",           # Lightning's save_last
        "best.pt",
        "final.pt",
        "*.safetensors",
    )
    for prefix in ("", "*/")   # the workdir and one level down (output/, checkpoints/)
) + ("lightning_logs/*/checkpoints/*.ckpt",)
"""Patterns used when a session has no `checkpoints:`; relative to the workdir."""

SETTLE_S = 0.5
"""Default interval between the two listings of a one-shot listing."""

FRESH_S = 2.0
"""A checkpoint modified less than this long before the listing counts as writing."""

HF_MARKER = "trainer_state.json"
_HF_DIR = re.compile(r"checkpoint-\d+")
_DS_DIR = re.compile(r"global_step(\d+)")
_STEP_PATTERNS = (
    re.compile(r"^checkpoint-(\d+)$"),
    re.compile(r"^global_step(\d+)$"),
    re.compile(r"(?:^|[^a-z])step[_=-]?(\d+)", re.IGNORECASE),
)


class CheckpointListingFailed(Exception):
    """The pod could not list a session's checkpoints; `str()` says why."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint on a pod.

    Attributes:
        name: path relative to the session's workdir, as matched (`output/checkpoint-500`).
        path: absolute path on the pod.
        kind: "file" or "dir".
        step: training step read from the name, or None.
        size: bytes (a folder: the sum of the regular files inside).
        mtime: modification time, pod clock, seconds (a folder: its newest entry).
        state: "complete" or "writing" (see module docstring).
        verified_local: a verified local copy exists (`checkpoint_index.mark_verified`).
        files: regular files inside (1 for a file).
        listed_at: the pod's clock when it was listed (for `age_s`), or None.
    """

    name: str
    path: str
    kind: str
    step: int | None
    size: int
    mtime: float
    state: str = COMPLETE
    verified_local: bool = False
    files: int = 1
    listed_at: float | None = None

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def age_s(self) -> float | None:
        """Seconds since it was last modified, by the pod's clock (never negative)."""
        return None if self.listed_at is None else max(0.0, self.listed_at - self.mtime)

    def to_json(self) -> dict:
        """The `checkpoints --json` object for this checkpoint."""
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "step": self.step,
            "size": self.size, "mtime": self.mtime,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
            "state": self.state, "verified_local": self.verified_local,
        }


@dataclass(frozen=True)
class _Entry:
    """One match as the listing printed it (before judging)."""

    kind: str
    name: str
    size: int
    mtime: float
    files: int = 1
    has_hf_marker: bool = False
    ds_latest: str | None = None


@dataclass(frozen=True)
class Listing:
    """What one `listing_command` run printed.

    Attributes:
        root: the workdir's physical path on the pod.
        rounds: one (pod clock, entries by name) per listing taken (1 or 2).
    """

    root: str
    rounds: tuple[tuple[float, dict[str, _Entry]], ...]


# ----------------------------------------------------------------------- names


def patterns_for(session: SessionConfig) -> tuple[str, ...]:
    """The session's globs (checked), or the defaults."""
    patterns = session.checkpoints or DEFAULT_PATTERNS
    for pattern in patterns:
        check_relative(pattern, "checkpoints glob")
    return tuple(patterns)


def step_of(name: str) -> int | None:
    """The training step in a checkpoint's file or folder name, or None."""
    base = posixpath.basename(name.rstrip("/"))
    for pattern in _STEP_PATTERNS:
        match = pattern.search(base)
        if match:
            return int(match.group(1))
    return None


def sort_newest_first(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    """Step-named ones first by step, then the rest by mtime (module docstring)."""
    return sorted(checkpoints, key=lambda c: (c.step is not None, c.step or 0, c.mtime), reverse=True)


# ----------------------------------------------------------------- the listing

# $1 workdir, $2 settle seconds (0: one listing), $3... globs. Records end in NUL and
# their last field is the name, so any byte but NUL may appear in a name.
#   W <physical workdir>            once
#   T <pod clock>                   starts each listing
#   F <size> <mtime> <name>         a file
#   D <size> <mtime> <files> <hf marker 0/1> <DeepSpeed latest> <name>   a folder
#   E                               last: the listing ran to its end
# IFS is a newline so a matched name with spaces stays one word; `$pat` unquoted is
# pathname-expanded only. Symlinked matches are skipped (see module docstring), and so
# is a match whose folder is physically outside the workdir: `ckpts/*/*` with
# `ckpts/run1 -> /etc` must not offer /etc/shadow. The folder is resolved with the
# builtins `cd -P`/`pwd -P` (no readlink needed) in a subshell, and the `x` after
# `pwd` keeps a folder name ending in a newline from being trimmed into the workdir's.
# After the W record stderr goes nowhere: through a PTY shell (RunPod's proxy) it
# shares the terminal with stdout, and a `find` complaint landing before a record
# would hide that checkpoint (nothing reads it over exec either).
_LISTING_SCRIPT = r"""
unset CDPATH
cd -- "$1" || exit 3
settle=$2
shift 2
root=$(pwd -P)
printf 'W\t%s\0' "$root"
exec 2>/dev/null
IFS='
'
listing() {
  printf 'T\t%s\0' "$(date +%s.%N)"
  for pat in "$@"; do
    for p in $pat; do
      [ -L "$p" ] && continue
      case $p in -*) q=./$p ;; *) q=$p ;; esac
      case $p in */*)
        r=$(cd -P -- "${q%/*}" && pwd -P && printf x) && r=${r%x} && r=${r%?} || continue
        case $r/ in "${root%/}"/*) ;; *) continue ;; esac
      esac
      if [ -d "$q" ]; then
        m=0; [ -e "$q/trainer_state.json" ] && m=1
        l=; d=$(dirname -- "$q")
        [ -f "$d/latest" ] && l=$(head -c 200 -- "$d/latest" | tr -d '\t\n\r\000')
        s=$(find "$q/" \( -type f -printf 'f %s %T@\n' \) -o -printf 'd 0 %T@\n' |
            awk '$1=="f" {s+=$2; n++} $3>m {m=$3} END {printf "%.0f\t%s\t%d", s, m, n}')
        printf 'D\t%s\t%s\t%s\t%s\0' "$s" "$m" "$l" "$p"
      elif [ -f "$q" ]; then
        printf 'F\t%s\t%s\0' "$(find "$q" -maxdepth 0 -printf '%s\t%T@')" "$p"
      fi
    done
  done
}
listing "$@"
if [ "$settle" != 0 ]; then
  sleep "$settle"
  listing "$@"
fi
printf 'E\0'
"""


def listing_command(workdir: str | None, patterns: Sequence[str], settle: float = 0.0) -> str:
    """The one exec that lists checkpoints (twice, `settle` s apart, when settle > 0)."""
    settle_arg = "0" if settle <= 0 else f"{settle:.3f}"
    words = " ".join(shlex.quote(p) for p in patterns)
    return f"sh -c {shlex.quote(_LISTING_SCRIPT)} sh {pod_dir(workdir)} {settle_arg} {words}"


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


class ListingCutShort(ValueError):
    """The listing's output stops before its end record: what is there is not all."""


def parse_listing(stdout: str) -> Listing:
    """Parse `listing_command` output.

    A listing is only ever whole: output without the final `E` record (a channel that
    closed, a killed shell, a proxy that dropped the rest) raises, because a shorter
    list would read as "no newer checkpoint" and let teardown destroy one.

    Raises:
        ValueError: output without the workdir record (not our script's output).
        ListingCutShort (a ValueError): output that stops before the end record.
    """
    root = None
    ended = False
    rounds: list[tuple[float, dict[str, _Entry]]] = []
    for record in stdout.split("\0"):
        tag, _, rest = record.partition("\t")
        if tag == "E" and not rest:
            ended = True
            break
        if tag == "W":
            root = rest
        elif tag == "T":
            rounds.append((_float(rest), {}))
        elif tag == "F" and rounds:
            size, mtime, name = rest.split("\t", 2)
            rounds[-1][1].setdefault(name, _Entry(FILE, name, int(size or 0), _float(mtime)))
        elif tag == "D" and rounds:
            size, mtime, files, marker, latest, name = rest.split("\t", 5)
            rounds[-1][1].setdefault(name, _Entry(
                DIR, name, int(size or 0), _float(mtime), int(files or 0), marker == "1", latest or None))
    if root is None:
        raise ValueError("unexpected checkpoint listing output (no workdir line)")
    if not ended:
        raise ListingCutShort("the listing was cut short (its output stops before the end)")
    return Listing(root, tuple(rounds))


# ------------------------------------------------------------------- judging


def _clean_name(name: str) -> str | None:
    """The name without `./` and trailing `/`, or None when it is unsafe."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    try:
        return check_relative(name)
    except UnsafeName:
        return None


def _marker_missing(entry: _Entry) -> bool:
    base = posixpath.basename(entry.name)
    if entry.kind != DIR:
        return False
    if _HF_DIR.fullmatch(base):
        return not entry.has_hf_marker
    ds = _DS_DIR.fullmatch(base)
    if ds and entry.ds_latest:
        latest = _DS_DIR.fullmatch(entry.ds_latest.strip())
        # DeepSpeed writes `latest` after the last shard: an older step there means
        # this folder is not finished. No `latest` at all: only the other rules apply.
        return latest is None or int(latest.group(1)) < int(ds.group(1))
    return False


def judge(listing: Listing, *, previous: Sequence[Checkpoint] | None = None,
          fresh: float = FRESH_S) -> list[Checkpoint]:
    """Checkpoints from a parsed listing, each `complete` or `writing`, newest first."""
    if not listing.rounds:
        return []
    now, last = listing.rounds[-1]
    first = listing.rounds[0][1] if len(listing.rounds) > 1 else None
    before = {c.name: c for c in previous or ()}
    entries = {}
    for raw_name, entry in last.items():
        name = _clean_name(raw_name)
        if name is not None and name not in entries:
            entries[name] = (raw_name, entry)
    folders = [n for n, (_, e) in entries.items() if e.kind == DIR]
    result = []
    for name, (raw_name, entry) in entries.items():
        if any(name.startswith(folder + "/") for folder in folders):
            continue  # part of a listed folder
        earlier = first.get(raw_name) if first is not None else None
        if first is not None and earlier is None:
            changed = True  # appeared during the settle interval
        elif earlier is not None:
            changed = (earlier.size, earlier.mtime) != (entry.size, entry.mtime)
        else:
            old = before.get(name)
            changed = old is not None and (old.size, old.mtime) != (entry.size, entry.mtime)
        age = now - entry.mtime
        just_modified = 0 <= age < fresh  # a negative age is clock skew (NFS): not evidence
        writing = changed or just_modified or _marker_missing(entry)
        result.append(Checkpoint(
            name=name,
            path=posixpath.join(listing.root, name),
            kind=entry.kind,
            step=step_of(name),
            size=entry.size,
            mtime=entry.mtime,
            state=WRITING if writing else COMPLETE,
            files=entry.files,
            listed_at=now,
        ))
    return sort_newest_first(result)


async def list_checkpoints(runner: Runner, pod: PodConfig, session: str | SessionConfig, *,
                           previous: Sequence[Checkpoint] | None = None,
                           settle: float | None = None, fresh: float = FRESH_S,
                           timeout: float | None = None) -> list[Checkpoint]:
    """The session's checkpoints on the pod, newest first.

    Args:
        runner: how to run commands on the pod (a transport `Fleet.borrow` lends).
        pod: the pod's config entry.
        session: the session's name or config.
        previous: an earlier result for the same session; when given, the listing is
            taken once and compared with it (no wait).
        settle: seconds between the two listings of a one-shot call (default
            `SETTLE_S`; 0 lists once and relies on `fresh` and the markers).
        fresh: a checkpoint modified this recently is `writing`.

    `verified_local` is False here; `checkpoint_index.mark_verified` fills it in.

    Raises:
        sessions.config.model.UnknownName: no such session in the pod's config.
        UnsafeName: a configured glob is absolute or contains `..`.
        CheckpointListingFailed: the pod could not list (no workdir, no GNU find).
        backends.ssh.SshFailure: the pod is unreachable.
    """
    cfg = pod.session(session) if isinstance(session, str) else session
    if settle is None:
        settle = 0.0 if previous is not None else SETTLE_S
    command = listing_command(cfg.workdir, patterns_for(cfg), settle)
    result = await runner.run(command, timeout=timeout or (30.0 + 2 * settle))
    if result.exit_status == 3:
        raise CheckpointListingFailed(
            f"session {cfg.name!r} on pod {pod.name!r}: cannot enter its workdir "
            f"{cfg.workdir or '~'!r}: {result.last_error_line()}")
    try:
        listing = parse_listing(result.stdout)
    except ListingCutShort as exc:
        raise CheckpointListingFailed(
            f"cannot list checkpoints of session {cfg.name!r} on pod {pod.name!r}: {exc} "
            f"({result.last_error_line()}); gpuctl will not act on part of a listing") from None
    except ValueError:
        raise CheckpointListingFailed(
            f"cannot list checkpoints of session {cfg.name!r} on pod {pod.name!r}: "
            f"{result.last_error_line()}") from None
    if not result.ok:
        # The end record is the script's last command, so a failure after it is not
        # the listing's; still, an exit status that says "failed" is never "complete".
        raise CheckpointListingFailed(
            f"cannot list checkpoints of session {cfg.name!r} on pod {pod.name!r}: "
            f"{result.last_error_line()}")
    return judge(listing, previous=previous, fresh=fresh)


def newest_complete(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The first complete checkpoint of a newest-first list, or None."""
    return next((c for c in checkpoints if c.complete), None)


def find_by_name(checkpoints: Sequence[Checkpoint], name: str) -> Checkpoint | None:
    """The checkpoint called `name` (its full relative name, or a unique basename)."""
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    exact = [c for c in checkpoints if c.name == name]
    if exact:
        return exact[0]
    by_base = [c for c in checkpoints if posixpath.basename(c.name) == name]
    return by_base[0] if len(by_base) == 1 else None



# --------------------------------------------------------- inside one checkpoint


@dataclass(frozen=True)
class RemoteFile:
    """One regular file a checkpoint download fetches.

    Attributes:
        rel: path relative to the checkpoint folder ("" for a file checkpoint).
        size: bytes.
    """

    rel: str
    size: int


# $1 the checkpoint folder. Records end in NUL, the relative path last:
#   R <physical path of the folder>
#   f <size> <relative path>                        a regular file
#   l <f|d|n> <target size> <resolved target> <relative path>   a symlink
#   o <relative path>                               fifo, socket, device: never read
# `find` does not follow symlinks, so every `f` lies under the folder itself; a link
# is resolved with `readlink -f` and judged by `parse_folder` against the R path.
_FOLDER_SCRIPT = r"""
cd -- "$1" || exit 3
printf 'R\t%s\0' "$(pwd -P)"
find . -mindepth 1 -type f -printf 'f\t%s\t%P\0'
find . -mindepth 1 -type l -exec sh -c '
for l do
  t=$(readlink -f -- "$l") || t=
  if [ -f "$l" ]; then k=f; s=$(stat -L -c %s -- "$l"); elif [ -d "$l" ]; then k=d; s=0; else k=n; s=0; fi
  printf "l\t%s\t%s\t%s\t%s\0" "$k" "$s" "$t" "${l#./}"
done' sh {} +
find . -mindepth 1 ! -type f ! -type l ! -type d -printf 'o\t%P\0'
"""

_SNAPSHOT_SCRIPT = r"""
exec 2>/dev/null
p=$1
if [ -d "$p" ]; then
  find "$p/" \( -type f -printf 'f %s %T@\n' \) -o -printf 'd 0 %T@\n' |
    awk '$1=="f" {s+=$2} $3>m {m=$3} END {printf "%.0f\t%s", s, m}'
elif [ -f "$p" ]; then
  find "$p" -maxdepth 0 -printf '%s\t%T@'
else
  exit 3
fi
"""


def folder_command(path: str) -> str:
    """List the files of a folder checkpoint (parse with `parse_folder`)."""
    return f"sh -c {shlex.quote(_FOLDER_SCRIPT)} sh {shlex.quote(path)}"


def parse_folder(stdout: str, name: str) -> list[RemoteFile]:
    """The regular files to fetch for folder checkpoint `name`, sorted by path.

    Symlinks to files inside the folder are fetched as the files they point to;
    symlinks to folders inside are skipped (their files are listed under the real
    path), dangling ones and special files too.

    Raises:
        UnsafeName: an absolute or `..` path, or a symlink resolving outside the folder.
        ValueError: output that is not this listing's.
    """
    root = None
    files: dict[str, RemoteFile] = {}
    for record in stdout.split("\0"):
        tag, _, rest = record.partition("\t")
        if tag == "R":
            root = rest.rstrip("/") or "/"
        elif tag == "f":
            size, rel = rest.split("\t", 1)
            check_relative(rel, f"file in {name!r}")
            files[rel] = RemoteFile(rel, int(size))
        elif tag == "l":
            kind, size, target, rel = rest.split("\t", 3)
            check_relative(rel, f"symlink in {name!r}")
            if root is None or not (target == root or target.startswith(root.rstrip("/") + "/")):
                raise UnsafeName(f"symlink {rel!r} in {name!r} points outside the checkpoint "
                                 f"(to {target or 'nowhere'!r}); gpuctl will not follow it")
            if kind == "f":
                files[rel] = RemoteFile(rel, int(size or 0))
    if root is None:
        raise ValueError(f"unexpected folder listing for {name!r}")
    return [files[k] for k in sorted(files)]


def snapshot_command(path: str) -> str:
    """Print `size<TAB>mtime` of a file or folder the way the listing counts them."""
    return f"sh -c {shlex.quote(_SNAPSHOT_SCRIPT)} sh {shlex.quote(path)}"


def parse_snapshot(stdout: str) -> tuple[int, float] | None:
    """(size, mtime) from `snapshot_command`, or None when unreadable."""
    size, _, mtime = stdout.strip().partition("\t")
    try:
        return int(size), float(mtime)
    except ValueError:
        return None
