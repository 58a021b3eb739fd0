"""The install → reuse → start → wait-ready lifecycle shared by every infrastructure component.

Each component (kafka.py, weaviate.py) describes itself as a :class:`Component`; the functions
here implement the policy once:

* a server that already answers the readiness probe on the configured port is reused, whoever
  started it (another checkout, a developer by hand), and is never stopped by us;
* otherwise we install if needed, refuse to start if another program holds one of the ports,
  write config, start the process detached and wait for the readiness probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragstream_cli.stack.config import HOST
from ragstream_cli.stack.errors import PortInUseError
from ragstream_cli.stack.install import is_installed
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.sysutil import file_lock, listening_pid, port_open, process_cmdline

__all__ = [
    "Component",
    "ComponentStatus",
    "EnsureResult",
    "component_status",
    "ensure_component",
    "stop_component",
]


@dataclass(frozen=True)
class Component:
    """How to install, configure, run and probe one infrastructure server.

    Attributes:
        name: Short id, also the state directory name ("kafka").
        title: Human name with version ("Kafka 4.1.1").
        version: Pinned version.
        install_dir: Machine-wide install directory.
        state_dir: Per-checkout directory for data, logs and the pid file.
        port: The client-facing port (what "port" means in status output).
        endpoint: What clients connect to ("127.0.0.1:9092", "http://127.0.0.1:8080").
        ports: Every port the server binds, by role; all must be free before a start.
        probe: Fast readiness check of a server on ``port``; must not raise.
        install: Installs into ``install_dir`` if missing (reporting progress).
        prepare: Writes config / formats storage before a start (reporting progress).
        process: The managed process description.
        start_timeout: Seconds to wait for readiness after a start.
        installed: Whether it is installed, for components not installed into ``install_dir``
            (a system package); None: ``install_dir`` holds a finished install.
    """

    name: str
    title: str
    version: str
    install_dir: Path
    state_dir: Path
    port: int
    endpoint: str
    ports: Mapping[str, int]
    probe: Callable[[], bool]
    install: Callable[[Reporter], object]
    prepare: Callable[[Reporter], None]
    process: ManagedProcess
    start_timeout: float
    installed: Callable[[], bool] | None = None


@dataclass(frozen=True)
class ComponentStatus:
    """Point-in-time state of one component.

    Attributes:
        running: The server answers its readiness probe on ``port``.
        managed: This checkout started it (a live pid file): ``stop_*`` will stop it.
        pid: The server's pid, from our pid file or, for a server we did not start, from the
            owner of the listening socket (best effort, may be None).
    """

    name: str
    version: str
    installed: bool
    install_dir: Path
    running: bool
    managed: bool
    pid: int | None
    port: int
    endpoint: str
    log_path: Path


@dataclass(frozen=True)
class EnsureResult:
    """Outcome of an ``ensure_*`` call: ``action`` is "reused" or "started"."""

    status: ComponentStatus
    action: Literal["reused", "started"]
    seconds: float

    @property
    def endpoint(self) -> str:
        """Where clients connect (shortcut for ``status.endpoint``)."""
        return self.status.endpoint


def component_status(component: Component) -> ComponentStatus:
    """Return the installed/running/managed state of ``component`` (cheap: probes once)."""
    own_pid = component.process.pid()
    running = component.probe()
    pid = own_pid
    if pid is None and running:
        pid = listening_pid(component.port)
    return ComponentStatus(
        name=component.name,
        version=component.version,
        installed=(
            component.installed()
            if component.installed is not None
            else is_installed(component.install_dir)
        ),
        install_dir=component.install_dir,
        running=running,
        managed=own_pid is not None,
        pid=pid,
        port=component.port,
        endpoint=component.endpoint,
        log_path=component.process.log_path,
    )


def _check_ports_free(component: Component) -> None:
    for role, port in component.ports.items():
        if not port_open(HOST, port):
            continue
        owner = listening_pid(port)
        who = f" by pid {owner} ({process_cmdline(owner)[:200]})" if owner is not None else ""
        raise PortInUseError(
            f"cannot start {component.title}: its {role} port {port} is already in use{who}, "
            f"and {component.endpoint} does not answer as a ready {component.title}. Stop that "
            "process or move this component with the RAGSTREAM_*_PORT environment variables."
        )


def ensure_component(component: Component, reporter: Reporter | None = None) -> EnsureResult:
    """Make ``component`` answer on its port: reuse a ready server, else install and start it.

    Returns within one probe when the server is already up.

    Raises:
        MissingToolError, InstallError: Installing failed.
        PortInUseError: Another program holds one of its ports.
        ProcessDiedError, ReadyTimeoutError: It was started but did not become ready.
    """
    started = time.monotonic()
    rep = reporter if reporter is not None else Reporter()

    def result(action: Literal["reused", "started"]) -> EnsureResult:
        return EnsureResult(component_status(component), action, time.monotonic() - started)

    if component.probe():
        return result("reused")
    with file_lock(component.state_dir / ".ensure.lock"):
        # Whoever held the lock before us may just have started it.
        if component.probe():
            return result("reused")
        proc = component.process
        if proc.is_running():
            # Started by an earlier call that returned early or by a concurrent one: still booting.
            with rep.step(f"Waiting for {component.title} to become ready", proc.log_path):
                proc.wait_ready(component.start_timeout, check=component.probe)
            return result("reused")
        component.install(rep)
        _check_ports_free(component)
        component.prepare(rep)
        with rep.step(f"Starting {component.title} on {component.endpoint}", proc.log_path):
            proc.start()
            proc.wait_ready(component.start_timeout, check=component.probe)
        return result("started")


def stop_component(
    component: Component, reporter: Reporter | None = None, timeout: float = 30.0
) -> bool:
    """Stop ``component`` if this checkout started it; True if a process was stopped.

    A server we merely reused (no live pid file of ours) is left alone: it belongs to someone else.
    """
    rep = reporter if reporter is not None else Reporter()
    with file_lock(component.state_dir / ".ensure.lock"):
        proc = component.process
        pid = proc.pid()
        if pid is None:
            proc.stop(timeout)  # clears a stale pid file
            if component.probe():
                rep.info(
                    f"{component.title} on {component.endpoint} was not started by this "
                    "checkout: leaving it running"
                )
            return False
        with rep.step(f"Stopping {component.title} (pid {pid})", proc.log_path):
            return proc.stop(timeout)
