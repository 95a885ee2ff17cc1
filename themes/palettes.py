"""gpuctl's Textual themes: a dark default, a light one and a high-contrast one.

Data only. Widgets never name a colour: they set semantic classes (`-hot`,
`-stalled`, `-offline`...) that `gpuctl.tcss` maps to these themes' variables
(`$error`, `$warning`, `$success`, `$text-muted`), so switching the theme recolours
everything, and a new theme is one more `Theme` here.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

HERE = Path(__file__).resolve().parent

STYLESHEETS: tuple[Path, ...] = (HERE / "gpuctl.tcss", HERE / "high_contrast.tcss")
"""The app's CSS_PATH: semantic classes and the fleet screen, then the high-contrast
overrides. Textual tokenizes CSS in Python at start-up, so what only other screens
use is in their own files, read when they first open:"""

POD_STYLESHEET = HERE / "pod.tcss"
"""The pod screen and the full-screen log."""

DIALOG_STYLESHEET = HERE / "dialogs.tcss"
"""Confirmation and pick dialogs, and the help screen."""

DARK = Theme(
    name="gpuctl-dark",
    primary="#4C9EEB",
    secondary="#2D6CA8",
    accent="#E8A33D",
    warning="#E8A33D",
    error="#E5534B",
    success="#57AB5A",
    foreground="#D8DEE4",
    background="#15191E",
    surface="#1C2128",
    panel="#22272E",
    dark=True,
    variables={"footer-key-foreground": "#4C9EEB", "log-match": "#E8A33D 35%"},
)

LIGHT = Theme(
    name="gpuctl-light",
    primary="#0969DA",
    secondary="#0550AE",
    accent="#9A6700",
    warning="#9A6700",
    error="#CF222E",
    success="#1A7F37",
    foreground="#1F2328",
    background="#FFFFFF",
    surface="#F6F8FA",
    panel="#EAEEF2",
    dark=False,
    variables={"footer-key-foreground": "#0969DA", "log-match": "#D4A72C 45%"},
)

HIGH_CONTRAST = Theme(
    name="gpuctl-high-contrast",
    primary="#00D7FF",
    secondary="#FFFFFF",
    accent="#FFFF00",
    warning="#FFFF00",
    error="#FF5F5F",
    success="#00FF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1C1C1C",
    dark=True,
    text_alpha=1.0,
    luminosity_spread=0.0,
    variables={"footer-key-foreground": "#FFFF00", "log-match": "#FFFF00 60%"},
)

THEMES: tuple[Theme, ...] = (DARK, LIGHT, HIGH_CONTRAST)
DEFAULT_THEME = DARK.name
