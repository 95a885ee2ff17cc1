"""Remember the theme chosen in the TUI, in a small JSON file in the user state dir.

Config `theme:` is the default; a theme picked from the command palette wins until
config names a different theme than it did when the pick was made (then the edited
config wins again). A damaged or unwritable file never stops the app.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs


def state_path() -> Path:
    return platformdirs.user_state_path("gpuctl") / "tui.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chosen_theme(config_theme: str | None, path: Path | None = None) -> str | None:
    """The theme to start with: the remembered pick, unless config changed since."""
    data = _read(path or state_path())
    theme = data.get("theme")
    if isinstance(theme, str) and data.get("config_theme") == config_theme:
        return theme
    return config_theme


def remember_theme(theme: str, config_theme: str | None, path: Path | None = None) -> None:
    """Record a pick (best effort: an unwritable state dir only loses the memory)."""
    path = path or state_path()
    data = _read(path)
    data.update(theme=theme, config_theme=config_theme)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
