"""Short human forms of numbers for tables: sizes, transfer rates, durations, percentages.

One formatter per kind of number, so a transfer's bar, its plain lines and its summary
say the same amount the same way (binary units: 300e6 bytes are '286M' everywhere).
"""

from __future__ import annotations


def size(num_bytes: float | None) -> str:
    """1536 -> '1.5K'; binary units, one decimal below 10."""
    if num_bytes is None:
        return "-"
    value = float(num_bytes)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(value) < 1024 or unit == "P":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if abs(value) < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.0f}P"  # pragma: no cover - loop always returns


def rate(bytes_per_s: float | None) -> str:
    """A transfer's speed in the units of `size`: 310e6 -> '296M/s'. The bar, the
    plain lines and the summary of a transfer all say it this way (a bar in decimal MB
    beside a summary in binary M read as two different amounts)."""
    if bytes_per_s is None:
        return "-"
    return f"{size(bytes_per_s)}/s"


def mib(value: float | None) -> str:
    """Memory in MiB as nvidia-smi reports it, shown in GiB: 81920 -> '80.0G'."""
    if value is None:
        return "-"
    return f"{value / 1024:.1f}G"


def duration(seconds: float | None) -> str:
    """3725 -> '1h02m'; 90061 -> '1d01h'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def age(seconds: float | None) -> str:
    """How old a last-known value is, coarse enough to stay put between redraws:
    42 -> '42s', 200 -> '3m', 7300 -> '2h', 200000 -> '2d'; None -> '?'."""
    if seconds is None:
        return "?"
    s = int(max(0.0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def number(value: float | None, unit: str = "", digits: int = 0) -> str:
    """A number with a unit, or '-' when unknown."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"
