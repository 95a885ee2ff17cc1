"""`gpuctl upload POD LOCAL_PATH [REMOTE_PATH]`: a file or folder up to a pod.

Parallel over the pod's one connection, resumable (a rerun sends only what the pod
does not hold yet), verified by SHA-256 on both ends, renamed into place on the pod;
never over an existing file without `--force` (`sessions.checkpoints.upload`).

Exit status: 0 uploaded and verified; 1 the pod, the link or the copy failed
(unreachable, transfer stopped, SHA-256 mismatch); 2 the command line or config is
wrong (unknown pod, missing local path, `..` in REMOTE_PATH, the destination exists
without --force). stdout: one line naming the copy; progress and diagnostics on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, complain, load_pod_or_explain, refuse_read_only, run_async
from tui.terminal_text import visible

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    upload = sub.add_parser("upload", help="upload a file or folder to a pod, resumable and verified")
    upload.add_argument("pod", metavar="POD")
    upload.add_argument("local_path", metavar="LOCAL_PATH", help="a file or a folder here")
    upload.add_argument("remote_path", metavar="REMOTE_PATH", nargs="?",
                        help="a folder on the pod to put it in, or its new name; a relative path "
                             "starts at your home on the pod, as with scp (default: the first "
                             "session's workdir)")
    upload.add_argument("--force", action="store_true", help="replace what is already there on the pod")
    upload.set_defaults(handler=_upload)


def _upload(args: argparse.Namespace) -> int:
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if refuse_read_only(config, "upload"):
        return EXIT_USAGE
    return run_async(lambda: _upload_async(config, pod, args.local_path, args.remote_path, args.force))


async def _upload_async(config: Any, pod: Any, local: str, remote: str | None, force: bool) -> int:
    from sessions.checkpoints.upload import UploadError
    from sessions.errors import SshFailure
    from sessions.fleet.facade import Fleet
    from tui import humanize
    from tui.transfer_progress import TransferProgress

    try:
        with TransferProgress(f"{pod.name} <- {local}") as progress:
            async with Fleet.for_command(config, [pod.name]) as fleet:  # the call the TUI would make
                result = await fleet.upload(pod.name, local, remote, force=force, progress=progress)
    except UploadError as exc:
        complain(exc.message)
        return exc.exit_code
    except SshFailure as exc:
        complain(f"pod {pod.name!r}: {exc.message}")
        return EXIT_FAILED
    if result.method == "pty":
        print(f"gpuctl: pod {pod.name!r} is reached through a shell-only proxy: the upload went through "
              "its shell, one range at a time (slower than a direct SSH pod)", file=sys.stderr)
    rate = humanize.rate(result.transferred / result.seconds if result.seconds > 0 else 0.0)
    resumed = f", resumed after {humanize.size(result.resumed_from)}" if result.resumed_from else ""
    files = f"{result.files} files, " if result.files != 1 else ""
    print(visible(f"{result.local_path}: {files}{humanize.size(result.size)} in {result.seconds:.1f}s "
                  f"({rate}{resumed}), sha256 verified -> {pod.name}:{result.remote_path}"))
    return 0
