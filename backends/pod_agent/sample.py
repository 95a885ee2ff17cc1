"""One telemetry sample: GPUs, disk, load, uptime and tmux read once, each section guarded
so a bug in one costs that section, not the tick. ``backends/local.py`` calls
``collect_sample`` in a thread for ``host: local``.
"""

from __future__ import annotations

import os
import sys
import time

from .gpus import GpuReader, NVIDIA_SMI_LOOP_RETRY_S, NVIDIA_SMI_TIMEOUT_S
from .health import HEALTH_INTERVAL_S, KERNEL_LOG_INTERVAL_S, SLOW_INTERVAL_S, HealthPoller
from .protocol import AGENT_PROTOCOL_VERSION
from .system import read_disk, read_load, read_uptime
from .tmux import TMUX_REFRESH_S, TmuxReader


def make_sample(seq, t, gpu, gpu_source, disk, load, uptime_s, tmux, health=None):
    """Build a protocol sample; the one place its keys are written.

    Args:
        gpu: ``(gpu_status, gpu_error, gpus)``.
        tmux: ``(tmux_status, tmux_error, sessions)``.
        health: a finished health reading (``health.HealthPoller``), sent under ``health``
            once, in the first sample after it finished, else absent.
    """
    sample = {
        "kind": "sample", "v": AGENT_PROTOCOL_VERSION, "t": t, "seq": seq,
        "gpu_status": gpu[0], "gpu_error": gpu[1], "gpu_source": gpu_source, "gpus": gpu[2],
        "disk": disk, "load": load, "uptime_s": uptime_s,
        "tmux_status": tmux[0], "tmux_error": tmux[1], "tmux": tmux[2],
    }
    if health is not None:
        sample["health"] = health
    return sample


class AgentState:
    """What collecting samples needs to remember between ticks.

    Args:
        disk_path: path whose filesystem is reported; ``~`` is expanded here, on the pod.
        tmux: report tmux sessions (False reports ``tmux_status`` "none").
        use_nvml: try pynvml before nvidia-smi.
        nvidia_smi_timeout: seconds before nvidia-smi counts as hung.
        gpu_loop: keep one nvidia-smi resident in loop mode (False: exec per tick).
        interval: the tick period, which a loop-mode nvidia-smi queries at; the agent
            keeps it current through ``self.gpu.set_interval``.
        gpu_loop_retry_s: first wait before loop mode is retried after a failure.
        tmux_refresh_s: the longest an unchanged tmux listing is reused.
        health_interval_s: seconds between GPU health readings (a resident nvidia-smi
            loop, or pynvml), read in a thread; 0: never.
        health_slow_interval_s: seconds between reads of remapped rows and compute apps
            (two nvidia-smi execs).
        kernel_log_interval_s: seconds between kernel log reads for Xid lines (an exec);
            0: never.
    """

    def __init__(self, disk_path="~", tmux=True, use_nvml=True,
                 nvidia_smi_timeout=NVIDIA_SMI_TIMEOUT_S, gpu_loop=True, interval=1.0,
                 gpu_loop_retry_s=NVIDIA_SMI_LOOP_RETRY_S, tmux_refresh_s=TMUX_REFRESH_S,
                 health_interval_s=HEALTH_INTERVAL_S, health_slow_interval_s=SLOW_INTERVAL_S,
                 kernel_log_interval_s=KERNEL_LOG_INTERVAL_S):
        self.disk_path = os.path.abspath(os.path.expanduser(disk_path or "~"))
        self.tmux_enabled = bool(tmux)
        self.gpu = GpuReader(use_nvml=use_nvml, timeout=nvidia_smi_timeout, loop=gpu_loop,
                             interval=interval, loop_retry_s=gpu_loop_retry_s)
        self.tmux = TmuxReader(refresh_s=tmux_refresh_s)
        self.health = HealthPoller(health_interval_s, health_slow_interval_s, kernel_log_interval_s,
                                   use_nvml=use_nvml)
        self.seq = 0

    def close(self):
        self.gpu.close()
        self.health.close()


def _guarded(read, failed):
    """Run one section's reader; a bug in it costs that section, not the tick."""
    try:
        return read()
    except Exception as exc:
        return failed("internal error: %s: %s" % (type(exc).__name__, exc))


def collect_sample(state: AgentState, fresh: bool = False) -> dict:
    """Read everything once and return a protocol sample; advances ``state.seq``.

    Args:
        fresh: list tmux sessions even if nothing seems to have changed (an explicit
            ``sample`` command: the client may have just renamed or attached one).
    """
    t = round(time.time(), 3)
    now = time.monotonic()
    gpu = _guarded(state.gpu.read, lambda why: ("error", why, []))
    if state.tmux_enabled:
        tmux = _guarded(lambda: state.tmux.read(now, force=fresh), lambda why: ("error", why, []))
    else:
        tmux = ("none", None, [])
    disk = _guarded(lambda: read_disk(state.disk_path), lambda why: None)
    _guarded(lambda: state.health.tick(state.seq), lambda why: None)
    sample = make_sample(
        state.seq, t, gpu, state.gpu.source, disk, read_load(), read_uptime(), tmux, state.health.take()
    )
    state.seq += 1
    return sample


def make_hello(state):
    return {
        "kind": "hello", "v": AGENT_PROTOCOL_VERSION,
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "hostname": os.uname()[1], "pid": os.getpid(), "gpu_source": state.gpu.source,
    }
