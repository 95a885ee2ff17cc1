"""Shared fixtures: a real sshd on loopback, network-failure helpers, isolated gpuctl dirs.

The machinery lives in ``tests/support`` (pytest-free, so ``bench/`` uses it too); this
file only wires it into pytest. Tests that need a system program and find it missing
skip with the install hint, or fail when ``CI=true``, because a CI run that silently
skips the real-component tests proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests.support is imported as a package of the repository, as bench/ scripts do.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.support.sshd import (  # noqa: E402
    INSTALL_HINT,
    SilentServer,
    SshdServer,
    missing_tools,
    refused_port as _refused_port,
)

from tests.support.slurm import SLURM_TOOLS, SlurmCluster  # noqa: E402

SSHD_TOOLS = ("sshd", "ssh-keygen")


def require_tools_now(*names: str) -> None:
    """Skip the running test (fail under ``CI=true``) unless every program is installed."""
    missing = missing_tools(*names)
    if not missing:
        return
    message = f"needs {', '.join(missing)}, not installed; {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    # Users of a tmux tool run its tests from tmux. With $TMUX set, a bare `tmux`
    # command talks to the user's own server (their sessions would show up in the
    # tests, and a test's kill-server would end them), whatever TMUX_TMPDIR says.
    for var in ("TMUX", "TMUX_PANE"):
        os.environ.pop(var, None)
    # And a tmux of the run's own: a test that runs `tmux` on this machine (a `host:
    # local` pod) must not see the user's sessions on the default socket either.
    global _RUN_TMUX_TMPDIR
    _RUN_TMUX_TMPDIR = tempfile.mkdtemp(prefix="gpuctl-tests-tmux-")
    os.environ["TMUX_TMPDIR"] = _RUN_TMUX_TMPDIR
    config.addinivalue_line(
        "markers", "requires_tools(*names): skip (fail under CI=true) unless installed"
    )


_RUN_TMUX_TMPDIR = ""


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run's own tmux server (if a test started one) and remove its folder."""
    if _RUN_TMUX_TMPDIR:
        if shutil.which("tmux"):
            subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": _RUN_TMUX_TMPDIR},
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(_RUN_TMUX_TMPDIR, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires_tools"):
        require_tools_now(*marker.args)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Attach the sshd log of every sshd fixture a failed test used."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, SshdServer):
                report.sections.append((f"sshd log ({name})", value.log_text(tail=80)))
    return report


@pytest.fixture
def require_tools() -> Callable[..., None]:
    """``require_tools("tmux", "rsync")`` inside a test: skip, or fail under CI=true."""
    return require_tools_now


def _server(home_factory: pytest.TempPathFactory, **options: object) -> Iterator[SshdServer]:
    """A started server whose sessions get a HOME of their own: what gpuctl writes on
    a pod (~/.gpuctl/logs, exit files) must never land in the real user's home."""
    require_tools_now(*SSHD_TOOLS)
    home = home_factory.mktemp("pod-home")
    server = SshdServer(env={"HOME": str(home)}, **options)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """The shared test pod: python3 and the simulated nvidia-smi on PATH, two A100s.

    Session-scoped, so do not stop it, and put back any GPU state you change.
    """
    yield from _server(tmp_path_factory)


@pytest.fixture
def sshd_fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A pod of your own, for stop()/start() and anything else that disturbs it."""
    yield from _server(tmp_path_factory)


@pytest.fixture(scope="session")
def sshd_nopython(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A pod without python3 on PATH (the shell fallback's world)."""
    yield from _server(tmp_path_factory, python=False)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real single-host Slurm (munged, slurmctld, slurmd on loopback), one per run."""
    require_tools_now(*SLURM_TOOLS)
    with SlurmCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slurm_login(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """The cluster's login node: an sshd whose sessions reach `slurm_cluster` (SLURM_CONF)."""
    require_tools_now(*SSHD_TOOLS)
    home = tmp_path_factory.mktemp("login-home")
    server = SshdServer(env={"HOME": str(home), **slurm_cluster.login_env()})
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A loopback port that accepts TCP connections and never answers."""
    with SilentServer() as server:
        yield server


@pytest.fixture
def refused_port() -> int:
    """A loopback port where connecting is refused at once."""
    return _refused_port()


@pytest.fixture
def known_hosts_file(sshd: SshdServer, tmp_path: Path) -> Path:
    """A known_hosts file that pins the shared sshd's host key."""
    return sshd.write_known_hosts(tmp_path / "known_hosts")


@pytest.fixture(autouse=True)
def gpuctl_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Per-test XDG dirs, so no test reads or writes the real user's gpuctl config/state.

    Autouse: platformdirs resolves from these variables, and a subprocess started by a
    test inherits them. Returns the root; ``config``, ``state``, ``data`` and ``cache``
    are below it.
    """
    home = tmp_path_factory.mktemp("gpuctl-home")
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (home / sub).mkdir()
        monkeypatch.setenv(var, str(home / sub))
    return home


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, with an empty ~/.ssh, and no $TMUX: no ~/.ssh/config
    or known_hosts of the person running the tests leaks in, and a run inside tmux
    sends no tmux command to that person's server. Modules that need it for every
    test say `pytest.mark.usefixtures("isolated_home")`."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TMUX", raising=False)
    return home
