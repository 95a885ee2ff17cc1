"""From a pod's config entry to the settings the backends need."""

from __future__ import annotations

from backends.ssh import SshTarget, resolve_target
from sessions.config.loader import Defaults, PodConfig
from sessions.config.paths import gpuctl_known_hosts_path

LOCAL_HOST = "local"


def is_local(pod: PodConfig) -> bool:
    """`host: local` means gpuctl runs on the GPU machine itself: no SSH."""
    return pod.host == LOCAL_HOST


def ssh_target(pod: PodConfig, defaults: Defaults) -> SshTarget:
    """Resolve the pod's SSH settings: the pod entry, then ~/.ssh/config, then defaults."""
    return resolve_target(
        name=pod.name,
        host=pod.host,
        port=pod.port,
        user=pod.user,
        identity=pod.identity,
        host_key=pod.host_key,
        default_user=defaults.user,
        default_port=defaults.port,
        default_identity=defaults.identity,
        default_host_key=defaults.host_key,
        connect_timeout=pod.connect_timeout or defaults.connect_timeout,
        command_timeout=defaults.command_timeout,
        gpuctl_known_hosts=str(gpuctl_known_hosts_path()),
    )


def disk_path(pod: PodConfig) -> str:
    """The directory whose filesystem's usage we show: where the training writes."""
    if pod.workdir:
        return pod.workdir
    for session in pod.sessions:
        if session.workdir:
            return session.workdir
    return "~"


def interval(pod: PodConfig, defaults: Defaults) -> float:
    """Seconds between telemetry samples for this pod."""
    return pod.interval or defaults.interval
