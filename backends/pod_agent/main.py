"""The agent's entry point on the pod: reads the one JSON options argument (bad values are
said after hello, never fatal), installs the signal handlers and runs the loop.
"""

from __future__ import annotations

import json
import math
import signal

from .gpus import NVIDIA_SMI_LOOP_RETRY_S
from .health import HEALTH_INTERVAL_S, KERNEL_LOG_INTERVAL_S, SLOW_INTERVAL_S
from .loop import Agent
from .protocol import ChannelClosed
from .sample import AgentState
from .tmux import TMUX_REFRESH_S


def parse_options(argv):
    """Read the JSON options argument; returns ``(options, problem or None)``."""
    if not argv:
        return {}, None
    try:
        options = json.loads(argv[0])
    except ValueError as exc:
        return {}, "options are not JSON (%s); using defaults" % exc
    if not isinstance(options, dict):
        return {}, "options must be a JSON object; using defaults"
    return options, None


def main(argv):
    """Entry point on the pod: ``argv`` is ``[json_options]``."""
    options, problem = parse_options(argv)
    notices = [problem] if problem else []
    interval = options.get("interval", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval):
        notices.append("interval must be a number of seconds; using 1.0")
        interval = 1.0
    disk_path = options.get("disk_path", "~")
    if not isinstance(disk_path, str):
        notices.append("disk_path must be a string; using ~")
        disk_path = "~"
    refresh = options.get("tmux_refresh_s", TMUX_REFRESH_S)
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or not refresh >= 0:
        notices.append("tmux_refresh_s must be a number >= 0; using %g" % TMUX_REFRESH_S)
        refresh = TMUX_REFRESH_S
    retry = options.get("gpu_loop_retry_s", NVIDIA_SMI_LOOP_RETRY_S)
    if isinstance(retry, bool) or not isinstance(retry, (int, float)) or not retry > 0:
        notices.append("gpu_loop_retry_s must be a positive number; using %g" % NVIDIA_SMI_LOOP_RETRY_S)
        retry = NVIDIA_SMI_LOOP_RETRY_S
    every = {}
    for name, default in (("health_interval_s", HEALTH_INTERVAL_S), ("health_slow_interval_s", SLOW_INTERVAL_S),
                          ("kernel_log_interval_s", KERNEL_LOG_INTERVAL_S)):
        value = options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            notices.append("%s must be a number of seconds >= 0; using %g" % (name, default))
            value = default
        every[name] = value
    state = AgentState(
        disk_path=disk_path, tmux=bool(options.get("tmux", True)),
        gpu_loop=bool(options.get("gpu_loop", True)), gpu_loop_retry_s=retry,
        tmux_refresh_s=refresh, **every,
    )
    # SIGTERM/SIGHUP unwind through Agent.run's finally, which stops the resident
    # nvidia-smi; a SIGKILLed agent relies on that child's EPIPE instead (see SmiLoop).
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), _stop_on_signal)
    try:
        return Agent(state, interval=interval, notices=notices).run()
    except KeyboardInterrupt:
        return 130


def _stop_on_signal(signum, frame):
    raise ChannelClosed()
