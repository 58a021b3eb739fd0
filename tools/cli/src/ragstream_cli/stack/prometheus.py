"""Prometheus as an optional local process, from Debian's ``prometheus`` package, with promtool.

Install: when ``prometheus`` or ``promtool`` is not on PATH, ``apt-get install -y
--no-install-recommends prometheus`` (as root, non-interactive), after an ``apt-get update`` only
when ``apt-cache`` does not know the package yet. The package's own service is not ours: it would
read ``/etc/prometheus``, so a Prometheus found on our port is reused only if it reads our config
(see :func:`ensure_prometheus`). Run: ``prometheus`` on 127.0.0.1 with
``deploy/observability/prometheus.yml`` (the five services as static targets, the alert rules
beside it).

State in ``<stack>/prometheus/``: ``data/`` (the TSDB), ``prometheus.log`` (its log),
``prometheus.pid``, ``install.log`` (apt-get's output).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from ragstream_cli.stack.components import (
    Component,
    ComponentStatus,
    EnsureResult,
    component_status,
    ensure_component,
    stop_component,
)
from ragstream_cli.stack.config import HOST, env_port
from ragstream_cli.stack.install import apt_install
from ragstream_cli.stack.paths import cache_home, component_dir, repo_root
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter

__all__ = [
    "PROMETHEUS_PACKAGE",
    "PrometheusTools",
    "ensure_prometheus",
    "ensure_promtool",
    "find_prometheus_tools",
    "install_prometheus",
    "prometheus_argv",
    "prometheus_component",
    "prometheus_config_path",
    "prometheus_port",
    "prometheus_ready",
    "prometheus_requested",
    "prometheus_state_dir",
    "prometheus_status",
    "prometheus_status_row",
    "prometheus_url",
    "prometheus_version",
    "stop_prometheus",
]

NAME = "prometheus"
# From the distribution, not pinned by us (Debian 12: 2.42): the configs use nothing newer.
PROMETHEUS_PACKAGE = "prometheus"
_SERVER = "prometheus"
_PROMTOOL = "promtool"
# Where Debian's package puts both, shown while they are not installed yet.
_SYSTEM_BIN = Path("/usr/bin")
# An empty TSDB opens in a second; the margin is for a loaded machine or a long WAL replay.
_START_TIMEOUT_S = 60.0
# A local, developer-sized history.
_RETENTION = "7d"
_ENABLE_VAR = "RAGSTREAM_PROMETHEUS"


@dataclass(frozen=True)
class PrometheusTools:
    """Where the Prometheus server and its companion checker live."""

    prometheus: Path
    promtool: Path


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found is not None else None


def find_prometheus_tools() -> PrometheusTools | None:
    """The ``prometheus`` and ``promtool`` on PATH, or None when either is missing."""
    server = _which(_SERVER)
    promtool = _which(_PROMTOOL)
    if server is None or promtool is None:
        return None
    return PrometheusTools(prometheus=server, promtool=promtool)


def prometheus_port() -> int:
    """Prometheus's web port: default 9090, overridable with RAGSTREAM_PROMETHEUS_PORT."""
    return env_port("RAGSTREAM_PROMETHEUS_PORT", 9090)


def prometheus_url() -> str:
    """Its web UI and API, e.g. ``http://127.0.0.1:9090``."""
    return f"http://{HOST}:{prometheus_port()}"


def prometheus_requested() -> bool:
    """Whether RAGSTREAM_PROMETHEUS asks ``ragstream up`` for a local Prometheus ("1", "true")."""
    return os.environ.get(_ENABLE_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def prometheus_state_dir() -> Path:
    """Per-checkout state directory: ``<stack dir>/prometheus``."""
    return component_dir(NAME)


def prometheus_config_path() -> Path:
    """The local scrape config of this checkout: ``deploy/observability/prometheus.yml``."""
    return repo_root() / "deploy" / "observability" / "prometheus.yml"


def prometheus_version() -> str | None:
    """The installed server's version ("2.42.0"), or None if missing or unreadable."""
    tools = find_prometheus_tools()
    if tools is None:
        return None
    try:
        out = subprocess.run(
            [str(tools.prometheus), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # "prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)"
    match = re.search(r"version (\d+(?:\.\d+)*)", out.stdout + out.stderr)
    return match.group(1) if match is not None else None


def prometheus_argv(config: Path, state_dir: Path, port: int, binary: str = _SERVER) -> list[str]:
    """The command line of a loopback-only Prometheus keeping its TSDB under ``state_dir``.

    Args:
        config: The scrape config (rule files are resolved relative to it).
        state_dir: The TSDB goes into its ``data`` subdirectory.
        port: The web port (UI, API, ``/-/ready``).
        binary: The ``prometheus`` executable.
    """
    return [
        binary,
        f"--config.file={config.as_posix()}",
        f"--storage.tsdb.path={(state_dir / 'data').as_posix()}",
        f"--storage.tsdb.retention.time={_RETENTION}",
        f"--web.listen-address={HOST}:{port}",
    ]


def install_prometheus(reporter: Reporter | None = None) -> PrometheusTools:
    """Install Debian's ``prometheus`` (server and promtool) unless both are there; return them.

    ``apt-get update`` runs only when apt-cache has no candidate for the package. Concurrent
    callers serialise on a lock file; the ones that waited find it installed.

    Raises:
        MissingToolError: apt-get is missing, or we are not root.
        InstallError: apt-get failed (message has ``<stack>/prometheus/install.log`` and its tail).
    """
    manual = (
        f"Install Prometheus 2.x yourself (Debian/Ubuntu: apt-get install {PROMETHEUS_PACKAGE}) "
        f"and put {_SERVER} and {_PROMTOOL} on PATH."
    )
    return apt_install(
        PROMETHEUS_PACKAGE,
        find=find_prometheus_tools,
        absent=f"`{_SERVER}` and `{_PROMTOOL}` are not both on PATH",
        manual=manual,
        log_path=prometheus_state_dir() / "install.log",
        lock_path=cache_home() / f".{NAME}-apt.lock",
        reporter=reporter if reporter is not None else Reporter(),
    )


def ensure_promtool(reporter: Reporter | None = None) -> Path:
    """Return ``promtool``, installing Prometheus first when it is missing.

    Raises:
        MissingToolError, InstallError: See :func:`install_prometheus`.
    """
    return install_prometheus(reporter).promtool


def prometheus_ready(port: int | None = None, timeout: float = 2.0) -> bool:
    """Whether a Prometheus on 127.0.0.1:``port`` answers ``/-/ready`` with 200."""
    target = port if port is not None else prometheus_port()
    try:
        return httpx.get(f"http://{HOST}:{target}/-/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _served_config(port: int) -> str | None:
    """The ``--config.file`` of the Prometheus on ``port``, or None if it does not say."""
    try:
        response = httpx.get(f"http://{HOST}:{port}/api/v1/status/flags", timeout=2.0)
        value = response.json()["data"]["config.file"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _prepare(reporter: Reporter) -> None:
    (prometheus_state_dir() / "data").mkdir(parents=True, exist_ok=True)


def _process() -> ManagedProcess:
    state = prometheus_state_dir()
    tools = find_prometheus_tools()
    binary = str(tools.prometheus) if tools is not None else _SERVER
    return ManagedProcess(
        name=NAME,
        argv=prometheus_argv(prometheus_config_path(), state, prometheus_port(), binary),
        log_path=state / "prometheus.log",
        pid_path=state / "prometheus.pid",
        cwd=state,
        ready=prometheus_ready,
    )


def _installed() -> bool:
    return find_prometheus_tools() is not None


def prometheus_component() -> Component:
    """Prometheus described for the generic lifecycle (port read from the environment now)."""
    port = prometheus_port()
    version = prometheus_version()
    tools = find_prometheus_tools()
    return Component(
        name=NAME,
        title=f"Prometheus {version}" if version else "Prometheus",
        version=version or PROMETHEUS_PACKAGE,
        # A system package: where its binary lives, not a directory of ours.
        install_dir=tools.prometheus.parent if tools is not None else _SYSTEM_BIN,
        state_dir=prometheus_state_dir(),
        port=port,
        endpoint=prometheus_url(),
        ports={"web": port},
        probe=lambda: prometheus_ready(port),
        install=install_prometheus,
        prepare=_prepare,
        process=_process(),
        start_timeout=_START_TIMEOUT_S,
        installed=_installed,
    )


def ensure_prometheus(reporter: Reporter | None = None) -> EnsureResult:
    """Make Prometheus answer on :func:`prometheus_url`: reuse a ready one, else install + start.

    A reused Prometheus that reads another config (the package's own service, say) still
    answers, but scrapes something else: the reporter says so.

    Raises:
        StackError: See :func:`ragstream_cli.stack.components.ensure_component`.
    """
    rep = reporter if reporter is not None else Reporter()
    result = ensure_component(prometheus_component(), rep)
    if result.action == "reused":
        served = _served_config(result.status.port)
        ours = prometheus_config_path().as_posix()
        if served is not None and Path(served).resolve().as_posix() != ours:
            rep.info(
                f"Prometheus on {result.endpoint} reads {served}, not {ours}: it does not scrape "
                "this checkout's services. Stop it, or move ours with RAGSTREAM_PROMETHEUS_PORT."
            )
    # The component was described before a first install could tell its version: look again.
    return dataclasses.replace(result, status=prometheus_status())


def stop_prometheus(reporter: Reporter | None = None, timeout: float = 30.0) -> bool:
    """Stop the Prometheus this checkout started (SIGTERM, then SIGKILL); True if one ran."""
    return stop_component(prometheus_component(), reporter, timeout)


def prometheus_status() -> ComponentStatus:
    """Installed / running / managed state of Prometheus."""
    return component_status(prometheus_component())


def prometheus_status_row() -> tuple[str, str, str, str, str] | None:
    """The ``ragstream status`` row (component, state, pid, endpoint, log), None if not running.

    Prometheus is optional: a stack without it shows no row rather than a "stopped" one.
    """
    status = prometheus_status()
    if not status.running:
        return None
    state = "running" if status.managed else "running (not started by this checkout)"
    return (
        f"{status.name} {status.version}",
        state,
        str(status.pid or ""),
        status.endpoint,
        str(status.log_path),
    )
