"""`gpuctl status` as a table: rich with colour on a terminal, plain aligned text otherwise.

One row per GPU, pod-level columns (state, disk, load, uptime, price) only on a pod's
first row so the eye groups them. Colour carries meaning only: connection state and
temperature. Why a pod is not online is printed under the table in full, because
such messages are long and a person must be able to act on them, with how old the
values still shown are: a pod that is not online shows its last known values dimmed,
never in live colours.
"""

from __future__ import annotations

import time
from typing import Iterable

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from sessions.config.policy_model import Alerts, policies_for
from sessions.snapshot import FleetSnapshot, GpuSample, PodSnapshot, PodState
from tui import humanize
from tui.terminal_text import plain_table, visible

ALARMING_KINDS = frozenset({"host-key-changed", "host-key-revoked"})
"""Failures that may mean someone is in the middle: shown in bold red, not plain red."""

COLUMNS = ("POD", "STATE", "GPU", "TEMP", "UTIL", "MEMORY", "POWER", "DISK", "LOAD", "UP", "$/H", "SPENT")

STATE_STYLE = {
    PodState.ONLINE: "green",
    PodState.CONNECTING: "dim",
    PodState.RECONNECTING: "yellow",
    PodState.OFFLINE: "bold red",
    PodState.PREEMPTED: "bold magenta",
    PodState.STOPPED: "bold cyan",
    PodState.TERMINATED: "bold dim",
}

WARM_MARGIN_C = 10.0
"""How far under the alert threshold a GPU turns "warm": far enough to be seen coming
(75 °C under the default 85 °C), near enough not to colour every busy GPU."""


def pod_alerts(config, pod_name: str) -> Alerts:
    """The `alerts:` policy in force for a pod: the one place the colours, the toasts and
    the alerts take their thresholds from. gpuctl's defaults without a config (the demo)
    or for a pod the config does not name."""
    if config is None:
        return Alerts()
    try:
        return policies_for(config, config.pod(pod_name)).alerts
    except KeyError:  # UnknownName: a pod added at run time
        return Alerts()


def hot_at(alerts: Alerts) -> float:
    """The temperature that colours a cell hot: the alert threshold. With the alert
    turned off the default still colours, so a hot GPU never looks cool on screen."""
    return alerts.gpu_temp_c if alerts.gpu_temp_c is not None else Alerts().gpu_temp_c  # type: ignore[return-value]


def temp_tone(temp_c: float | None, hot_c: float | None = None) -> str:
    """'hot' at or over `hot_c` (the pod's alert threshold; default 85 °C), 'warm' from
    WARM_MARGIN_C under it, 'muted' without a reading, else ''."""
    hot = hot_c if hot_c is not None else hot_at(Alerts())
    if temp_c is None:
        return "muted"
    if temp_c >= hot:
        return "hot"
    return "warm" if temp_c >= hot - WARM_MARGIN_C else ""


WARM_MARGIN_PCT = 10.0
"""How far under the disk alert threshold the DISK cell turns yellow (80% under 90%)."""


def disk_style(pod: PodSnapshot, alerts: Alerts) -> str:
    """Red at or over the pod's `disk_used_pct` alert threshold, yellow from
    WARM_MARGIN_PCT under it; uncoloured with the alert off or no reading."""
    used, limit = (pod.disk.used_pct if pod.disk else None), alerts.disk_used_pct
    if used is None or limit is None:
        return ""
    if used >= limit:
        return "bold red"
    return "yellow" if used >= limit - WARM_MARGIN_PCT else ""


def temp_style(temp_c: float | None, hot_c: float | None = None) -> str:
    """Rich style of `temp_tone`: red when hot, yellow when warm."""
    return {"muted": "dim", "hot": "bold red", "warm": "yellow"}.get(temp_tone(temp_c, hot_c), "")


def _gpu_cells(gpu: GpuSample) -> list[str]:
    mem = f"{humanize.mib(gpu.mem_used_mib)}/{humanize.mib(gpu.mem_total_mib)}"
    if gpu.power_w is None:
        power = "-"
    elif gpu.power_limit_w:
        power = f"{gpu.power_w:.0f}/{gpu.power_limit_w:.0f}W"
    else:
        power = f"{gpu.power_w:.0f}W"
    name = f"{gpu.index}: {short_gpu_name(gpu.name)}" if gpu.index is not None else short_gpu_name(gpu.name)
    return [name, humanize.number(gpu.temp_c, "°C"), humanize.number(gpu.util_pct, "%"), mem, power]


def short_gpu_name(name: str | None) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100-SXM4-80GB': the vendor prefix is noise here."""
    if not name:
        return "?"
    for prefix in ("NVIDIA GeForce ", "NVIDIA "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def billed_price(pod: PodSnapshot) -> float | None:
    """The pod's $/h where it is billed now (`PodSnapshot.billing_now`), else None: a
    stopped or torn-down pod's price is no cost, in the rows as in the `$/h` total."""
    return pod.price_per_hour if pod.billing_now else None


def price_text(pod: PodSnapshot) -> str:
    """The `$/h` cell: '7.56', or '-' where nothing is billed now."""
    price = billed_price(pod)
    return f"{price:.2f}" if price is not None else "-"


def _pod_cells(pod: PodSnapshot) -> list[str]:
    disk = "-"
    if pod.disk and pod.disk.total_bytes:
        disk = f"{humanize.size(pod.disk.used_bytes)}/{humanize.size(pod.disk.total_bytes)}"
    load = f"{pod.load[0]:.2f}" if pod.load else "-"
    price = price_text(pod)
    spent = f"{pod.spend_usd:.2f}" if pod.spend_usd is not None else "-"
    return [disk, load, humanize.duration(pod.uptime_s), price, spent]


def _no_gpu_cell(pod: PodSnapshot) -> str:
    if pod.state != PodState.ONLINE and not pod.gpus:
        return "-"
    if pod.gpu_status == "none":
        return "no GPU"
    if pod.gpu_status == "error":
        return "GPU error"
    return "-"


def rows(pod: PodSnapshot) -> Iterable[tuple[list[str], GpuSample | None]]:
    """The table rows of one pod: cells as text, with the GPU each row shows."""
    pod_cells = _pod_cells(pod)
    blank_pod = [""] * len(pod_cells)
    if not pod.gpus:
        yield [pod.name, pod.state, _no_gpu_cell(pod), "", "", "", "", *pod_cells], None
        return
    for i, gpu in enumerate(pod.gpus):
        head = [pod.name, pod.state] if i == 0 else ["", ""]
        yield [*head, *_gpu_cells(gpu), *(pod_cells if i == 0 else blank_pod)], gpu


def age_text(pod: PodSnapshot, now: float | None = None) -> str:
    """'3m ago': how old a stale pod's values are ('' when they are live or unknown).

    The one wording of that age: the status table's problems, the fleet screen's rows
    (`tui.fleet_rows`) and the pod screen's header.
    """
    age = pod.age_s(time.time() if now is None else now) if pod.stale else None
    return "" if age is None else f"{humanize.age(age)} ago"


def problems(fleet: FleetSnapshot, now: float | None = None) -> list[tuple[PodSnapshot, str]]:
    """(pod, message) for every pod that is not fully well, in config order; a pod that
    is not online says how old the values still shown for it are."""
    found = []
    now = time.time() if now is None else now
    for pod in fleet.pods:
        if pod.state != PodState.ONLINE and (pod.error or pod.stale):
            age = age_text(pod, now)
            last = f" (values shown are last known, from {age})" if age else ""
            found.append((pod, f"{pod.error or pod.state}{last}"))
        elif pod.gpu_status == "error" and pod.gpu_error:
            found.append((pod, f"GPU: {pod.gpu_error}"))
    return found


def summary(fleet: FleetSnapshot) -> str:
    """'2/3 pods online · 10 GPUs · $4.87/h': the first thing the eye should find."""
    online = [p for p in fleet.pods if p.state == PodState.ONLINE]
    gpus = sum(len(p.gpus) for p in online)
    prices = [price for price in map(billed_price, fleet.pods) if price is not None]
    parts = [f"{len(online)}/{len(fleet.pods)} pods online", f"{gpus} GPU{'s' if gpus != 1 else ''}"]
    if prices:
        parts.append(f"${sum(prices):.2f}/h")
    spent = [p.spend_usd for p in fleet.pods if p.spend_usd is not None]
    if spent:
        parts.append(f"${sum(spent):.2f} spent")
    return " · ".join(parts)


def rich_renderable(fleet: FleetSnapshot, config=None) -> RenderableType:
    """The coloured table with the problems under it, for printing or `rich.live`.

    `config` gives each pod's temperature threshold (`pod_alerts`); None: the defaults.
    """
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for col in COLUMNS:
        justify = "right" if col in ("TEMP", "UTIL", "MEMORY", "POWER", "DISK", "LOAD", "UP", "$/H", "SPENT") else "left"
        table.add_column(col, justify=justify, no_wrap=True)
    for pod in fleet.pods:
        alerts = pod_alerts(config, pod.name)  # every colour below from the one policy
        for i, (cells, gpu) in enumerate(rows(pod)):
            styled = [Text(visible(c)) for c in cells]
            styled[0].stylize("bold")
            styled[1].stylize(STATE_STYLE.get(pod.state, ""))
            if pod.stale:  # not online: last known samples dimmed, never in live colours (price and spend are live)
                for cell in styled[2:COLUMNS.index("$/H")]:
                    cell.stylize("dim italic")
                table.add_row(*styled)
                continue
            if i == 0:
                styled[COLUMNS.index("DISK")].stylize(disk_style(pod, alerts))
            if gpu is not None:
                styled[3].stylize(temp_style(gpu.temp_c, hot_at(alerts)))
            elif cells[2] in ("no GPU", "-"):
                styled[2].stylize("dim")
            elif cells[2] == "GPU error":
                styled[2].stylize("red")
            table.add_row(*styled)
    parts: list[RenderableType] = [Text(summary(fleet), style="bold"), Text(""), table]
    for pod, message in problems(fleet):
        line = Text()
        line.append(f"{pod.name}: ", style="bold")
        style = "bold red" if pod.error_kind in ALARMING_KINDS else "red"
        line.append(visible(message), style=style)
        parts.append(line)
    return Group(*parts)


def render_rich(fleet: FleetSnapshot, console: Console, config=None) -> None:
    """Print the coloured table and the problems under it (`config`: see rich_renderable)."""
    console.print(rich_renderable(fleet, config))


def render_plain(fleet: FleetSnapshot) -> str:
    """Aligned plain text, for pipes and logs: no colour, no box characters."""
    table = [list(COLUMNS)]
    for pod in fleet.pods:
        table.extend(cells for cells, _ in rows(pod))
    return plain_table(table) + "".join(f"{pod.name}: {visible(message)}\n" for pod, message in problems(fleet))
