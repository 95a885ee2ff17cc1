"""`gpuctl pods import PROVIDER [--write]`, `gpuctl stop POD`, `gpuctl teardown POD`.

Exit status: 0 done, or nothing to do (already stopped, already gone: said so);
1 the provider refused, failed, did not answer within `--api-timeout` or answered
something gpuctl cannot read; gpuctl refused (no stop at this provider, the newest
checkpoint has no verified local copy: teardown, and stop where the provider's stop
wipes a disk, e.g. RunPod's container disk); or the new state did not show in time; 2 the command line, config or environment is wrong (unknown pod, no provider
entry, the key variable unset, no terminal to confirm on and no --yes).

Confirmation: on a terminal, stop and teardown print what is kept and what is lost,
then ask for the pod's name to be typed; `--yes` skips that, and without a terminal
`--yes` is required. Progress goes to stderr, the outcome to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tui.commands.common import EXIT_USAGE, complain, load_pod_or_explain, refuse_read_only, run_async

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    pods = sub.add_parser("pods", help="pods from your provider account")
    pods_sub = pods.add_subparsers(dest="pods_command", metavar="ACTION", required=True)
    imp = pods_sub.add_parser("import", help="list the account's running instances as pod entries")
    imp.add_argument("provider", metavar="PROVIDER", help="runpod, vastai, lambda, tensordock, thunder, crusoe, aws, ...")
    imp.add_argument("--write", action="store_true", help="add them to the config file (default: only print)")
    imp.add_argument("--api-url", metavar="URL", help="the provider's server root (default: the official one)")
    imp.add_argument("--key-env", metavar="NAME", help="environment variable holding the API key")
    imp.set_defaults(handler=_import)

    for verb, text in (("stop", "stop a pod's instance through its provider (asks first)"),
                       ("teardown", "terminate a pod's instance through its provider (asks first)")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("pod", metavar="POD")
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                       help="seconds to wait for the provider to report the new state (default 600)")
        p.add_argument("--api-timeout", type=_positive, default=None, metavar="S",
                       help="seconds each provider API call may take, retries included (default 20)")
        p.add_argument("--force", action="store_true",
                       help=f"{verb} even though the newest checkpoint has no verified local copy"
                       + (" (stop checks only where the provider's stop wipes a disk)" if verb == "stop" else ""))
        p.set_defaults(handler=_stop if verb == "stop" else _teardown)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _api_timeout(args: argparse.Namespace) -> dict[str, float]:
    return {} if args.api_timeout is None else {"api_timeout": args.api_timeout}



def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------- stop/teardown


def _confirm(pod: Any, lines: list[str]) -> bool:
    """Print `lines` and ask for the pod's name; True only when it is typed exactly."""
    for line in lines:
        print(line, file=sys.stderr)
    print(f"Type the pod's name ({pod.name}) to confirm: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == pod.name


def _prepare(args: argparse.Namespace, verb: str) -> tuple[Any, Any, Any] | int:
    """(config, pod, capabilities), or an exit status after saying why not."""
    loaded = load_pod_or_explain(args)
    if loaded is None:
        return EXIT_USAGE
    config, pod = loaded
    if refuse_read_only(config, verb):
        return EXIT_USAGE
    from sessions.providers import ops as provider_ops

    try:
        entry = provider_ops.provider_entry(pod, "tear down" if verb == "teardown" else verb)
        provider_ops.settings_for(entry, pod_name=pod.name)  # the key variable is set
    except provider_ops.ProviderSetupError as exc:
        complain(str(exc))
        return EXIT_USAGE
    caps = provider_ops.capabilities(entry)
    if not args.yes and not sys.stdin.isatty():
        complain(f"not doing {verb} of pod {pod.name!r} without confirmation: pass --yes to do it without a prompt")
        return EXIT_USAGE
    return config, pod, caps


def _report(result: Any, verb: str) -> int:
    print(result.message)
    if result.kept:
        print(f"  kept: {result.kept}")
    if result.gone:
        print(f"  {'lost' if verb == 'stop' else 'gone'}: {result.gone}")
    return EXIT_FAILED if result.outcome == "timeout" else 0


async def _act(verb: str, coro: Any) -> int:
    from sessions.errors import ProviderError
    from sessions.providers import ops as provider_ops

    try:
        return _report(await coro, verb)
    except provider_ops.ActionRefused as exc:
        complain(str(exc))
    except provider_ops.ProviderSetupError as exc:
        complain(str(exc))
        return EXIT_USAGE
    except ProviderError as exc:
        complain(str(exc))
    return EXIT_FAILED


def _stop(args: argparse.Namespace) -> int:
    prepared = _prepare(args, "stop")
    if isinstance(prepared, int):
        return prepared
    config, pod, caps = prepared
    if not caps.can_stop:
        complain(f"not stopping pod {pod.name!r}: {caps.stop_refusal}")
        return EXIT_FAILED
    return run_async(lambda: _stop_async(args, config, pod, caps))


async def _stop_async(args: argparse.Namespace, config: Any, pod: Any, caps: Any) -> int:
    entry = pod.provider
    return await _guarded(
        args, config, pod, verb="stop", guarded=caps.stop_loses_data, caps=caps, undone="not stopped",
        question=[f"Stop pod {pod.name!r} ({entry.type} {entry.id})?", f"  kept: {caps.stop_keeps}",
                  f"  lost: {caps.stop_loses}"])


def _teardown(args: argparse.Namespace) -> int:
    prepared = _prepare(args, "teardown")
    if isinstance(prepared, int):
        return prepared
    config, pod, caps = prepared
    return run_async(lambda: _teardown_async(args, config, pod, caps))


async def _teardown_async(args: argparse.Namespace, config: Any, pod: Any, caps: Any) -> int:
    entry = pod.provider
    return await _guarded(
        args, config, pod, verb="teardown", guarded=True, caps=caps, undone="not torn down",
        question=[f"Tear down pod {pod.name!r} ({entry.type} {entry.id or pod.host})?",
                  f"  gone: {caps.teardown_destroys}"])


async def _guarded(args: argparse.Namespace, config: Any, pod: Any, *, verb: str, guarded: bool,
                   caps: Any, undone: str, question: list[str]) -> int:
    """Stop or teardown behind the checkpoint guard: the guard is asked before the
    prompt (so nobody types a name only to be refused), its answer is shown in the
    prompt, and the operation reuses that answer instead of asking again. All of it
    goes through one `Fleet.for_command` (the calls the TUI makes): the guard's listing
    and hashing, and a `type: ssh` pod's power-off, share one connection."""
    from sessions.fleet.facade import Fleet

    async with Fleet.for_command(config, [pod.name]) as fleet:
        return await _guarded_on(fleet, args, pod, verb=verb, guarded=guarded, caps=caps, undone=undone,
                                 question=question)


async def _guarded_on(fleet: Any, args: argparse.Namespace, pod: Any, *, verb: str, guarded: bool,
                      caps: Any, undone: str, question: list[str]) -> int:
    from sessions.providers import ops as provider_ops

    checked = guarded and not args.force
    ok, note = await fleet.teardown_check(pod.name) if checked else (True, "")
    if not ok:
        complain(provider_ops.refusal(pod, verb, note, caps))
        return EXIT_FAILED
    if not args.yes:
        lines = list(question)
        if note:
            lines.append(f"  checkpoints: {note}")
        elif guarded:
            lines.append("  checkpoints: not checked (--force)")
        if not _confirm(pod, lines):
            complain(undone)
            return EXIT_FAILED

    async def decided(_pod: Any) -> tuple[bool, str]:
        return ok, note

    operation = fleet.stop_instance if verb == "stop" else fleet.teardown_instance
    return await _act(verb, operation(pod.name, force=args.force, guard=decided, progress=_progress,
                                      timeout=args.timeout, **_api_timeout(args)))


# -------------------------------------------------------------------------- import


def _import(args: argparse.Namespace) -> int:
    from sessions.config.loader import ConfigError, ConfigNotFound, ProviderConfig, load_config, locate_config
    from sessions.config.model import PROVIDER_TYPES
    from sessions.config.schema import PROVIDER_ALIASES
    from sessions.config.fields import suggest

    kind = args.provider.strip().lower()
    kind = PROVIDER_ALIASES.get(kind, kind)
    if kind not in PROVIDER_TYPES:
        close = suggest(kind, PROVIDER_TYPES, PROVIDER_ALIASES)
        complain(f"unknown provider {args.provider!r}; " +
             (f"did you mean {close!r}?" if close else f"known providers: {', '.join(PROVIDER_TYPES)}"))
        return EXIT_USAGE
    location = locate_config(args.config)
    try:
        config = load_config(location)
    except ConfigNotFound:
        config = None  # nothing to keep: --write creates the file
    except ConfigError as exc:
        complain(f"{exc}\n(fix the config before importing into it)")
        return EXIT_USAGE
    # Reuse how an existing pod of this provider reaches it (key variable, server).
    sibling = next((p.provider for p in (config.pods if config else ()) if p.provider and p.provider.type == kind), None)
    key_env = args.key_env or (sibling.api_key_env if sibling else None)
    api_url = args.api_url or (sibling.api_url if sibling else None)
    options = dict(sibling.options) if sibling else {}
    options.pop("ssh_proxy", None)
    entry = ProviderConfig(kind, None, options, api_key_env=key_env, api_url=api_url)
    return run_async(lambda: _import_async(args, config, location.path, entry))


async def _import_async(args: argparse.Namespace, config: Any, path: Any, entry: Any) -> int:
    from sessions.errors import ProviderError
    from sessions.providers import pod_import
    from sessions.providers import ops as provider_ops

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if entry.type == "skypilot":
        # SkyPilot's own SSH entries say everything (no `sky` call): see skypilot_import.
        from sessions.providers import skypilot_import

        clusters = skypilot_import.read_clusters()
        if not clusters:
            complain(f"no SkyPilot clusters: {skypilot_import.generated_dir()} holds no SSH entries "
                     "(SkyPilot writes them while a cluster is up: sky status)")
            return 0
        sky_plan = skypilot_import.plan(config, clusters, indent=pod_import.list_indent(text))
        jobs_text = skypilot_import.job_entries(config, clusters, sky_plan, indent=pod_import.list_indent(text, "jobs"))
        return _write_plan(args, path, text, "skypilot", sum(len(c) for c in clusters), sky_plan, jobs_text)
    try:
        provider = provider_ops.build_provider(entry)
    except provider_ops.ProviderSetupError as exc:
        complain(str(exc))
        return EXIT_USAGE
    try:
        if not provider.capabilities.can_list:
            complain(f"{entry.type} pods cannot be imported: there is no provider API to list them")
            return EXIT_USAGE
        instances = await provider.list()
    except ProviderError as exc:
        complain(str(exc))
        return EXIT_FAILED
    finally:
        await provider.aclose()
    extra = {k: v for k, v in (("api_key_env", entry.api_key_env), ("api_url", entry.api_url)) if v}
    extra.update({k: v for k, v in entry.options.items() if k in ("region", "zone", "project", "resource_group",
                                                                   "subscription", "profile")})
    plan = pod_import.plan(config, entry.type, instances, indent=pod_import.list_indent(text), provider_extra=extra)
    return _write_plan(args, path, text, entry.type, len(instances), plan)


def _write_plan(args: argparse.Namespace, path: Any, text: str, kind: str, count: int, plan: Any,
                jobs_text: str = "") -> int:
    """Print or write an import plan (`--write`), saying what was skipped and why;
    `jobs_text`: `jobs:` entries that group the new pods (a multi-node cluster)."""
    from sessions.providers import pod_import

    for info, why in plan.skipped:
        complain(f"skipped {kind} {info.id}{f' ({info.name})' if info.name else ''}: {why}")
    if not plan.added and not jobs_text:
        print(f"nothing to import from {kind}: {count} instance(s), none new and running")
        return 0
    entries = "".join(p.text for p in plan.added)
    if any(p.info.ssh_proxied for p in plan.added):
        complain(f"note: {pod_import.PROXY_NOTE}")
    if not args.write:
        print(f"# would add {len(plan.added)} pod(s) to {path} (run again with --write to add them):")
        sys.stdout.write(entries)
        if jobs_text:
            print("# and under jobs:")
            sys.stdout.write(jobs_text)
        return 0
    try:
        new_text = pod_import.insert_pods(text, entries) if entries else text
        if jobs_text:
            new_text = pod_import.insert_pods(new_text, jobs_text, "jobs")
        pod_import.write_config(path, new_text)
    except pod_import.ImportError_ as exc:
        complain(f"{path}: {exc}")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - ConfigError or OSError: nothing was written
        complain(f"{path} was not changed: {exc}")
        return EXIT_FAILED
    names = ", ".join(p.name for p in plan.added)
    print(f"added {len(plan.added)} pod(s) to {path}: {names}")
    if jobs_text:
        print(f"grouped the nodes of each multi-node cluster as a job under jobs: in {path}")
    return 0
