"""A simulated ``nvidia-smi`` for tests and ``gpuctl demo`` on machines without a GPU.

It is the one stand-in the test suite allows (ARCHITECTURE.md, Tests), so it prints
exactly what the real tool prints for the calls gpuctl makes. Standard library only:
it runs as ``python3 sim_nvidia_smi.py ARGS`` on a simulated pod, and ``install_wrapper``
puts an executable named ``nvidia-smi`` in a folder for PATH.

Supported calls:

* ``--query-gpu=FIELDS --format=csv[,noheader][,nounits]`` (``FIELDS`` from
  ``QUERY_FIELDS``, comma-separated, any order; an unknown one fails like the real tool);
* ``--query-compute-apps=FIELDS`` (``pid``, ``used_memory``...: one row per process in
  each GPU's ``compute_apps`` list; with none, the header alone) and
  ``--query-remapped-rows=FIELDS`` (one row per GPU), with the same ``--format``;
* ``-L`` / ``--list-gpus`` (MIG devices listed under their GPU);
* no arguments: a short version of the usual table;
* loop mode, with a query: ``-l SEC`` / ``--loop=SEC`` or ``-lms MS`` / ``--loop-ms=MS``
  prints a batch (one row per GPU; the header, if asked for, only once), sleeps, and
  does it again until killed, as the real tool does. The state file is read again for
  every batch, so a test changes the GPUs while it loops; a failure in the state ends
  the loop with the real message and exit status. It exits quietly (status 0) when its
  reader goes away (EPIPE), which is what keeps a loop from outliving gpuctl's agent.

State file
----------
Read on every call from the JSON file named by ``$GPUCTL_SIM_GPU_STATE``, so a demo
changes the GPUs by rewriting it (write a temp file and rename it, so a call never sees
half a file)::

    {
      "driver_version": "550.54.15",      # optional (default: this one), shown by
                                          # the table and --query-gpu=driver_version
      "cuda_version": "12.4",             # optional (default: this one), in the
                                          # table's header, where `gpuctl check` reads it
      "fail": null,                       # null | "driver" | "no-devices"
      "delay_s": 0,                       # optional: sleep first (to test timeouts),
                                          # before every batch in loop mode
      "gpus": [
        {"index": 0, "uuid": "GPU-...", "name": "NVIDIA A100-SXM4-80GB",
         "temperature.gpu": 45, "utilization.gpu": 97,
         "memory.used": 61234, "memory.total": 81920,
         "power.draw": 312.5, "power.limit": 400.0,
         "mig_devices": [{"profile": "1g.10gb", "uuid": "MIG-..."}],   # optional, for -L
         "ecc.errors.uncorrected.volatile.total": 2,                   # health fields:
         "clocks_event_reasons.hw_slowdown": "Active",                 # see HEALTH_FIELDS
         "pcie.link.width.current": 4, "pcie.link.width.max": 16,
         "remapped_rows.failure": "No",                                # --query-remapped-rows
         "compute_apps": [{"pid": 4135549, "used_memory": 7242,       # --query-compute-apps
                           "process_name": "python"}]}
      ],
      "kernel_log": {"denied": false, "lines": ["[ 12.3] NVRM: Xid ..."]}  # sim_dmesg.py
    }

GPU keys are nvidia-smi's own field names. A number is formatted as nvidia-smi does
(power with two decimals, units unless ``nounits``); a string is printed verbatim, so
``"[N/A]"``, ``"[Not Supported]"`` or ``"[Insufficient Permissions]"`` come out as the
real tool prints them. A missing key prints ``[N/A]``; a missing ``index`` is the GPU's
position in the list. ``fail: "driver"`` prints the driver message and exits 9;
``fail: "no-devices"`` (or an empty ``gpus`` list) prints ``No devices were found`` and
exits 6, as nvidia-smi does on a machine without GPUs.

Health fields are nvidia-smi's own names and values: counts are numbers; clock event
reasons are ``"Active"``/``"Not Active"``; ``persistence_mode`` is ``"Enabled"``/``"Disabled"``;
``retired_pages.pending`` and ``remapped_rows.pending``/``.failure`` are ``"Yes"``/``"No"``.
``clocks_event_reasons.*`` and the older ``clocks_throttle_reasons.*`` read the same state
key (either spelling); a driver older than 535 (``driver_version``) refuses the
``clocks_event_reasons.*`` names as unknown fields, as those drivers do, so a reader
must fall back to the old ones. A GeForce answers ``[N/A]`` for ECC: put the string in.

When ``$GPUCTL_SIM_GPU_STATE`` is unset or names a file that does not exist, the tool
behaves as one healthy, busy A100 (``DEFAULT_STATE``), so a demo works with no setup.
A state file that exists but is not valid JSON is an error (exit 2): a broken fixture
should fail loudly, not pass as a default GPU.
"""

from __future__ import annotations

import json
import os
import sys
import time

STATE_ENV = "GPUCTL_SIM_GPU_STATE"

DRIVER_FAILURE_MESSAGE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)
NO_DEVICES_MESSAGE = "No devices were found"
EXIT_DRIVER_FAILURE = 9
EXIT_NO_DEVICES = 6
EXIT_BAD_ARGUMENTS = 2

#: Field -> (unit shown in the header and after values, value kind).
QUERY_FIELDS = {
    "index": ("", "int"),
    "uuid": ("", "str"),
    "name": ("", "str"),
    "pci.bus_id": ("", "str"),
    "driver_version": ("", "str"),
    "count": ("", "int"),
    "pstate": ("", "str"),
    "temperature.gpu": ("", "int"),
    "fan.speed": ("%", "int"),
    "utilization.gpu": ("%", "int"),
    "utilization.memory": ("%", "int"),
    "memory.used": ("MiB", "int"),
    "memory.total": ("MiB", "int"),
    "memory.free": ("MiB", "int"),
    "power.draw": ("W", "watts"),
    "power.limit": ("W", "watts"),
    "persistence_mode": ("", "str"),
    "ecc.mode.current": ("", "str"),
    "ecc.errors.corrected.volatile.total": ("", "int"),
    "ecc.errors.uncorrected.volatile.total": ("", "int"),
    "ecc.errors.corrected.aggregate.total": ("", "int"),
    "ecc.errors.uncorrected.aggregate.total": ("", "int"),
    "retired_pages.single_bit_ecc.count": ("", "int"),
    "retired_pages.double_bit.count": ("", "int"),
    "retired_pages.pending": ("", "str"),
    "pcie.link.gen.current": ("", "int"),
    "pcie.link.gen.max": ("", "int"),
    "pcie.link.width.current": ("", "int"),
    "pcie.link.width.max": ("", "int"),
    "clocks.sm": ("MHz", "int"),
    "clocks.max.sm": ("MHz", "int"),
}
#: The clock event reasons, under the name drivers >= 535 use and the older one.
CLOCK_REASONS = (
    "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown",
    "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown", "sync_boost",
)
EVENT_PREFIX, THROTTLE_PREFIX = "clocks_event_reasons.", "clocks_throttle_reasons."
for _reason in CLOCK_REASONS + ("active",):
    QUERY_FIELDS[EVENT_PREFIX + _reason] = ("", "str")
    QUERY_FIELDS[THROTTLE_PREFIX + _reason] = ("", "str")
EVENT_NAMES_SINCE_DRIVER = 535
"""Drivers before this one know only ``clocks_throttle_reasons.*``."""

#: ``--query-compute-apps`` fields -> (unit, kind); one row per process.
APP_FIELDS = {
    "pid": ("", "int"),
    "process_name": ("", "str"),
    "used_gpu_memory": ("MiB", "int"),
    "gpu_uuid": ("", "str"),
    "gpu_bus_id": ("", "str"),
    "gpu_name": ("", "str"),
}
APP_ALIASES = {"used_memory": "used_gpu_memory", "name": "process_name"}
#: ``--query-remapped-rows`` fields; one row per GPU.
REMAP_FIELDS = {
    "gpu_bus_id": ("", "str"),
    "gpu_uuid": ("", "str"),
    "gpu_name": ("", "str"),
    "remapped_rows.correctable": ("", "int"),
    "remapped_rows.uncorrectable": ("", "int"),
    "remapped_rows.pending": ("", "str"),
    "remapped_rows.failure": ("", "str"),
}
#: Other names nvidia-smi accepts; the header shows the canonical name, as the real one.
FIELD_ALIASES = {
    "gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
    "performance_state": "pstate",
}

DEFAULT_STATE = {
    "driver_version": "550.54.15",
    "cuda_version": "12.4",
    "fail": None,
    "gpus": [{
        "index": 0,
        "uuid": "GPU-5a3c2f1e-8b7d-4c6a-9e0f-1d2b3c4d5e6f",
        "name": "NVIDIA A100-SXM4-80GB",
        "pci.bus_id": "00000000:07:00.0",
        "pstate": "P0",
        "temperature.gpu": 45,
        "fan.speed": "[N/A]",
        "utilization.gpu": 97,
        "utilization.memory": 41,
        "memory.used": 61234,
        "memory.total": 81920,
        "power.draw": 312.5,
        "power.limit": 400.0,
        "persistence_mode": "Enabled",
        "ecc.mode.current": "Enabled",
        "ecc.errors.corrected.volatile.total": 0,
        "ecc.errors.uncorrected.volatile.total": 0,
        "ecc.errors.corrected.aggregate.total": 0,
        "ecc.errors.uncorrected.aggregate.total": 0,
        "retired_pages.single_bit_ecc.count": "[N/A]",
        "retired_pages.double_bit.count": "[N/A]",
        "retired_pages.pending": "[N/A]",  # an A100 remaps rows instead of retiring pages
        "remapped_rows.correctable": 0,
        "remapped_rows.uncorrectable": 0,
        "remapped_rows.pending": "No",
        "remapped_rows.failure": "No",
        "pcie.link.gen.current": 4,
        "pcie.link.gen.max": 4,
        "pcie.link.width.current": 16,
        "pcie.link.width.max": 16,
        "clocks.sm": 1410,
        "clocks.max.sm": 1410,
        "clocks_event_reasons.active": "0x0000000000000000",
        "clocks_event_reasons.gpu_idle": "Not Active",
        "clocks_event_reasons.applications_clocks_setting": "Not Active",
        "clocks_event_reasons.sw_power_cap": "Not Active",
        "clocks_event_reasons.hw_slowdown": "Not Active",
        "clocks_event_reasons.hw_thermal_slowdown": "Not Active",
        "clocks_event_reasons.hw_power_brake_slowdown": "Not Active",
        "clocks_event_reasons.sw_thermal_slowdown": "Not Active",
        "clocks_event_reasons.sync_boost": "Not Active",
        "compute_apps": [],
    }],
}


class UnknownFieldError(ValueError):
    """A ``--query-gpu`` field nvidia-smi would refuse."""

    def __init__(self, field):
        super().__init__('Field "%s" is not a valid field to query.' % field)
        self.field = field


def load_state(path: str | None = None) -> dict:
    """Read the state file (``$GPUCTL_SIM_GPU_STATE`` by default), or the default GPU.

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    path = os.environ.get(STATE_ENV) if path is None else path
    if not path or not os.path.exists(path):
        return json.loads(json.dumps(DEFAULT_STATE))  # a deep copy callers may change
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    if not isinstance(state, dict):
        raise ValueError("%s: the state must be a JSON object" % path)
    return state


def canonical_field(field: str, state: dict | None = None) -> str:
    """Map an accepted field name to the one nvidia-smi prints in its header.

    With ``state``, a driver older than 535 refuses the ``clocks_event_reasons.*``
    names, as it does not know them yet.
    """
    name = FIELD_ALIASES.get(field.strip(), field.strip())
    if name not in QUERY_FIELDS:
        raise UnknownFieldError(field.strip())
    if state is not None and name.startswith(EVENT_PREFIX) and _driver_major(state) < EVENT_NAMES_SINCE_DRIVER:
        raise UnknownFieldError(field.strip())
    return name


def _driver_major(state: dict) -> int:
    version = str(state.get("driver_version", DEFAULT_STATE["driver_version"]))
    try:
        return int(version.split(".")[0])
    except ValueError:
        return EVENT_NAMES_SINCE_DRIVER


def _gpu_value(state, gpus, position, field):
    """A GPU's raw value for ``field``: the state's, derived, or None (-> [N/A])."""
    gpu = gpus[position]
    if field in gpu:
        return gpu[field]
    if field == "index":
        return position
    if field == "count":
        return len(gpus)
    if field == "driver_version":  # every GPU has a driver: the table's default, too
        return state.get("driver_version", DEFAULT_STATE["driver_version"])
    if field == "memory.free":
        used, total = gpu.get("memory.used"), gpu.get("memory.total")
        if _is_number(used) and _is_number(total):
            return total - used
    for mine, other in ((EVENT_PREFIX, THROTTLE_PREFIX), (THROTTLE_PREFIX, EVENT_PREFIX)):
        if field.startswith(mine):  # one reason, two spellings: either key in the state
            return gpu.get(other + field[len(mine):])
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value, field: str, units: bool = True, table: dict | None = None) -> str:
    """Format one cell as nvidia-smi does: ``97 %``, ``61234 MiB``, ``312.50 W``, ``45``."""
    if value is None:
        return "[N/A]"
    if not _is_number(value):
        return str(value)  # "[N/A]", "[Not Supported]", names: printed verbatim
    unit, kind = (table or QUERY_FIELDS)[field]
    text = "%.2f" % value if kind == "watts" else str(int(round(value)))
    return "%s %s" % (text, unit) if units and unit else text


def header_cell(field: str, table: dict | None = None) -> str:
    """Header name; units stay in the header even with ``nounits``, as in the real tool."""
    unit = (table or QUERY_FIELDS)[field][0]
    return "%s [%s]" % (field, unit) if unit else field


def render_query(state: dict, fields, header: bool = True, units: bool = True) -> str:
    """Render ``--query-gpu=FIELDS --format=csv[,noheader][,nounits]`` output.

    Args:
        state: a state dict (see the module docstring); ``fail`` is not looked at here.
        fields: field names, e.g. ``["index", "memory.used"]``.
        header: print the header line (``noheader`` absent).
        units: print units after numbers (``nounits`` absent).

    Returns:
        The text, one line per GPU, each ending in a newline.

    Raises:
        UnknownFieldError: a field nvidia-smi does not know.
    """
    names = [canonical_field(field, state) for field in fields]
    gpus = state.get("gpus") or []
    lines = [", ".join(header_cell(name) for name in names)] if header else []
    for position in range(len(gpus)):
        cells = [format_value(_gpu_value(state, gpus, position, name), name, units) for name in names]
        lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def _other_field(field: str, table: dict, aliases: dict) -> str:
    name = aliases.get(field.strip(), field.strip())
    if name not in table:
        raise UnknownFieldError(field.strip())
    return name


def _gpu_identity(state, gpus, position, field):
    """``gpu_uuid``/``gpu_bus_id``/``gpu_name`` of a GPU, for the app and remap rows."""
    return _gpu_value(state, gpus, position, {"gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
                                              "gpu_name": "name"}[field])


def render_compute_apps(state: dict, fields, header: bool = True, units: bool = True) -> str:
    """Render ``--query-compute-apps=FIELDS``: one row per process, GPU by GPU.

    With no process on any GPU the real tool prints the header alone (nothing with
    ``noheader``); a used memory the driver cannot see (WDDM, some containers) is a
    ``"[N/A]"`` string in the state.

    Raises:
        UnknownFieldError: a field nvidia-smi does not know.
    """
    names = [_other_field(field, APP_FIELDS, APP_ALIASES) for field in fields]
    gpus = state.get("gpus") or []
    lines = [", ".join(header_cell(name, APP_FIELDS) for name in names)] if header else []
    for position, gpu in enumerate(gpus):
        for app in gpu.get("compute_apps") or []:
            cells = []
            for name in names:
                if name.startswith("gpu_"):
                    value = _gpu_identity(state, gpus, position, name)
                else:
                    value = app.get("used_memory" if name == "used_gpu_memory" else name)
                cells.append(format_value(value, name, units, APP_FIELDS))
            lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def render_remapped_rows(state: dict, fields, header: bool = True, units: bool = True) -> str:
    """Render ``--query-remapped-rows=FIELDS``: one row per GPU.

    Raises:
        UnknownFieldError: a field nvidia-smi does not know.
    """
    names = [_other_field(field, REMAP_FIELDS, {}) for field in fields]
    gpus = state.get("gpus") or []
    lines = [", ".join(header_cell(name, REMAP_FIELDS) for name in names)] if header else []
    for position, gpu in enumerate(gpus):
        cells = []
        for name in names:
            value = _gpu_identity(state, gpus, position, name) if name.startswith("gpu_") else gpu.get(name)
            cells.append(format_value(value, name, units, REMAP_FIELDS))
        lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def render_list(state: dict) -> str:
    """Render ``nvidia-smi -L``, MIG devices indented under their GPU."""
    gpus = state.get("gpus") or []
    lines = []
    for position in range(len(gpus)):
        index = _gpu_value(state, gpus, position, "index")
        name = format_value(_gpu_value(state, gpus, position, "name"), "name")
        uuid = format_value(_gpu_value(state, gpus, position, "uuid"), "uuid")
        lines.append("GPU %s: %s (UUID: %s)" % (index, name, uuid))
        for number, mig in enumerate(gpus[position].get("mig_devices") or []):
            lines.append("  MIG %-11s Device %2d: (UUID: %s)" % (mig.get("profile", "1g.10gb"), number, mig.get("uuid", "[N/A]")))
    return "".join(line + "\n" for line in lines)


_RULE = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"


def _row(left, middle, right):
    """One table row in the real layout: cells 39, 22 and 20 characters wide."""
    return "| %s | %s | %s |" % (left.ljust(39)[:39], middle.rjust(22)[-22:], right.rjust(20)[-20:])


def render_table(state: dict, now: float | None = None) -> str:
    """Render a short version of bare ``nvidia-smi``: header and one block per GPU.

    Only the layout people recognise; gpuctl reads just the header's
    ``CUDA Version:`` from it (``gpuctl check``).
    """
    gpus = state.get("gpus") or []
    driver = str(state.get("driver_version", DEFAULT_STATE["driver_version"]))
    cuda = str(state.get("cuda_version", DEFAULT_STATE["cuda_version"]))
    top = " NVIDIA-SMI %-22s Driver Version: %-14s CUDA Version: %s" % (driver, driver, cuda)
    lines = [
        time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)),
        "+" + "-" * (len(_RULE) - 2) + "+",
        "|" + top.ljust(len(_RULE) - 2) + "|",
        "|" + _RULE[1:],
        _row("GPU  Name                 Persistence-M", "Bus-Id          Disp.A", "Volatile Uncorr. ECC"),
        _row("Fan  Temp   Perf          Pwr:Usage/Cap", "Memory-Usage", "GPU-Util  Compute M."),
        "|" + _RULE[1:-1].replace("-", "=") + "|",
    ]
    for position in range(len(gpus)):
        value = lambda field, position=position: _gpu_value(state, gpus, position, field)  # noqa: E731
        name = format_value(value("name"), "name")
        lines.append(_row(
            ("%3s  %s" % (value("index"), name)).ljust(36)[:36] + "On ",
            "%s Off" % _plain(value("pci.bus_id")),
            "0",
        ))
        power = "%s / %5s" % (_short(value("power.draw"), "W"), _short(value("power.limit"), "W"))
        lines.append(_row(
            "%3s  %4s    %-4s" % (_short(value("fan.speed"), "%"), _short(value("temperature.gpu"), "C"),
                                  _plain(value("pstate"))[:4]) + power.rjust(22),
            "%9s / %9s" % (_short(value("memory.used"), "MiB"), _short(value("memory.total"), "MiB")),
            "%7s      Default" % _short(value("utilization.gpu"), "%"),
        ))
        lines.append(_RULE)
    return "".join(line + "\n" for line in lines)


def _plain(value):
    """A text cell: the table shows placeholders as a bare ``N/A``."""
    text = format_value(value, "name")
    return "N/A" if text.startswith("[") else text


def _short(value, unit):
    """A table cell: ``312W``, ``45C``; placeholders shrink to ``N/A`` as in the table."""
    if _is_number(value):
        return "%d%s" % (int(round(value)), unit)
    return "N/A"


def parse_format(spec: str):
    """Parse ``csv[,noheader][,nounits]`` into ``(header, units)``.

    Raises:
        ValueError: not a csv format or an unknown option.
    """
    options = [part.strip() for part in spec.split(",") if part.strip()]
    if "csv" not in options or any(o not in ("csv", "noheader", "nounits") for o in options):
        raise ValueError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
    return "noheader" not in options, "nounits" not in options


def _option(argv, name):
    """Value of ``--name=value`` or ``--name value``; None when absent."""
    for position, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
        if arg == name and position + 1 < len(argv):
            return argv[position + 1]
    return None


def run(argv, state: dict) -> tuple:
    """Answer one command line; returns ``(exit_status, stdout_text)``."""
    failure = state.get("fail")
    if failure == "driver":
        return EXIT_DRIVER_FAILURE, DRIVER_FAILURE_MESSAGE + "\n\n"
    if failure == "no-devices" or (failure is None and not state.get("gpus")):
        return EXIT_NO_DEVICES, NO_DEVICES_MESSAGE + "\n"
    if "-L" in argv or "--list-gpus" in argv:
        return 0, render_list(state)
    for option, render in (("--query-gpu", render_query), ("--query-compute-apps", render_compute_apps),
                           ("--query-remapped-rows", render_remapped_rows)):
        query = _option(argv, option)
        if query is None:
            continue
        try:
            header, units = parse_format(_option(argv, "--format") or "")
            return 0, render(state, query.split(","), header=header, units=units)
        except ValueError as exc:  # UnknownFieldError included
            return EXIT_BAD_ARGUMENTS, "%s\n\n" % exc
    if argv:
        return EXIT_BAD_ARGUMENTS, "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n\n"
    return 0, render_table(state)


def loop_seconds(argv):
    """The loop period asked for by ``-l``/``--loop`` or ``-lms``/``--loop-ms``, else None.

    Raises:
        ValueError: the period is not a positive number (the real tool refuses it too).
    """
    for name, scale in (("-lms", 0.001), ("--loop-ms", 0.001), ("-l", 1.0), ("--loop", 1.0)):
        value = _option(argv, name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise ValueError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
        return seconds
    return None


def _without_loop(argv):
    """``argv`` less its loop options, so ``run`` answers one batch of the query."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-l", "--loop", "-lms", "--loop-ms"):
            skip = True
        elif not arg.startswith(("--loop=", "--loop-ms=")):
            rest.append(arg)
    return rest


def _write(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def _delay(state):
    delay = state.get("delay_s") or 0
    if _is_number(delay) and delay > 0:
        time.sleep(delay)


def run_loop(argv, seconds: float, state: dict) -> int:
    """Print a batch every ``seconds`` until killed or a failure; returns the exit status.

    A state file caught half-written (a test that rewrote it in place) keeps the previous
    state for that batch rather than ending the loop over a test artefact.
    """
    argv = _without_loop(argv)
    header = "noheader" not in (_option(argv, "--format") or "")
    first = True
    while True:
        _delay(state)
        status, text = run(argv, state)
        if status != 0:
            _write(text)
            return status
        if not first:
            text = text.split("\n", 1)[1] if header else text
        _write(text)
        first = False
        time.sleep(seconds)
        try:
            state = load_state()
        except (OSError, ValueError):
            pass


def main(argv=None) -> int:
    """Command-line entry: print like nvidia-smi, return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        state = load_state()
    except (OSError, ValueError) as exc:
        sys.stderr.write("sim nvidia-smi: bad state file: %s\n" % exc)
        return EXIT_BAD_ARGUMENTS
    try:
        seconds = loop_seconds(argv)
    except ValueError as exc:
        _write("%s\n\n" % exc)
        return EXIT_BAD_ARGUMENTS
    try:
        if seconds is not None and _option(argv, "--query-gpu") is not None:
            return run_loop(argv, seconds, state)
        _delay(state)
        status, text = run(argv, state)
        _write(text)
        return status
    except BrokenPipeError:
        # The reader is gone (the agent exited): stop quietly. Point stdout at /dev/null
        # so the interpreter's final flush does not complain about the broken pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 0


def install_wrapper(bin_dir: str, python: str | None = None) -> str:
    """Write an executable ``nvidia-smi`` into ``bin_dir`` that runs this simulator.

    Args:
        bin_dir: an existing folder meant for PATH.
        python: interpreter to run it with (default: the current one).

    Returns:
        The wrapper's path.
    """
    import shlex

    script = os.path.abspath(__file__)
    path = os.path.join(bin_dir, "nvidia-smi")
    # -S: skip site-packages; the simulator needs none and starts faster per call.
    body = "#!/bin/sh\nexec %s -S %s \"$@\"\n" % (shlex.quote(python or sys.executable), shlex.quote(script))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(body)
    os.chmod(path, 0o755)
    return path


if __name__ == "__main__":
    sys.exit(main())
