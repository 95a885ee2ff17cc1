"""Where gpuctl keeps its own files (never inside the user's ~/.ssh)."""

from __future__ import annotations

from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """Durable data: gpuctl's known_hosts, the verified-download index."""
    return platformdirs.user_data_path("gpuctl")


def gpuctl_known_hosts_path() -> Path:
    """The known_hosts file that `host_key: accept-new` records into."""
    return data_dir() / "known_hosts"
