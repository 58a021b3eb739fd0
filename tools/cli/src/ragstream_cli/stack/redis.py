"""Redis as a local process, from Debian's ``redis-server`` package: the shared embedding cache.

Install: when ``redis-server`` is not on PATH, ``apt-get update`` then ``apt-get install -y
--no-install-recommends redis-server`` (as root, non-interactive). The package's own service is
not ours: where a service manager starts it on our port, the lifecycle finds it answering PING and
reuses it like any server it did not start. Run: ``redis-server`` on 127.0.0.1, in the foreground,
without persistence and with an LRU memory cap: losing the cache costs re-embedding, never
correctness.

State in ``<stack>/redis/``: the working directory (``--dir``; nothing is saved into it),
``redis.log`` (its log, on stdout), ``redis.pid``, ``install.log`` (apt-get's output).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import subprocess
from pathlib import Path

from ragstream_cli.stack.components import (
    Component,
    ComponentStatus,
    EnsureResult,
    component_status,
    ensure_component,
    stop_component,
)
from ragstream_cli.stack.config import HOST, REDIS_MAXMEMORY, REDIS_PACKAGE, redis_port
from ragstream_cli.stack.install import apt_install
from ragstream_cli.stack.paths import cache_home, component_dir
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter

__all__ = [
    "ensure_redis",
    "install_redis",
    "redis_argv",
    "redis_binary",
    "redis_component",
    "redis_ready",
    "redis_state_dir",
    "redis_status",
    "redis_url",
    "redis_version",
    "stop_redis",
]

NAME = "redis"
_BINARY = "redis-server"
# Redis starts in milliseconds; the margin is for a loaded machine.
_START_TIMEOUT_S = 30.0
_PING = b"*1\r\n$4\r\nPING\r\n"


def redis_state_dir() -> Path:
    """Per-checkout state directory: ``<stack dir>/redis``."""
    return component_dir(NAME)


def redis_url() -> str:
    """What clients connect to, e.g. ``redis://127.0.0.1:6379/0``."""
    return f"redis://{HOST}:{redis_port()}/0"


def redis_binary() -> Path | None:
    """The ``redis-server`` on PATH, or None when it is not installed."""
    found = shutil.which(_BINARY)
    return Path(found) if found is not None else None


def redis_version() -> str | None:
    """The installed ``redis-server``'s version ("7.0.15"), or None if missing or unreadable."""
    binary = redis_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..."
    match = re.search(r"\bv=(\d+(?:\.\d+)*)", out.stdout)
    return match.group(1) if match is not None else None


def redis_argv(state_dir: Path, port: int, binary: str = _BINARY) -> list[str]:
    """The command line of a loopback-only, non-persistent, memory-capped cache server.

    Args:
        state_dir: Its working directory (``--dir``).
        port: The client port.
        binary: The ``redis-server`` executable.
    """
    return [
        binary,
        "--bind",
        HOST,
        "--port",
        str(port),
        "--dir",
        state_dir.as_posix(),
        # No RDB snapshots, no append-only file: a restart starts with an empty cache.
        "--save",
        "",
        "--appendonly",
        "no",
        # In the foreground, logging to stdout: the managed process owns the pid and the log.
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--protected-mode",
        "yes",
        "--maxmemory",
        REDIS_MAXMEMORY,
        "--maxmemory-policy",
        "allkeys-lru",
    ]


def install_redis(reporter: Reporter | None = None) -> Path:
    """Install Debian's ``redis-server`` with apt-get unless it is on PATH; return the binary.

    Concurrent callers serialise on a lock file; the ones that waited find it installed.

    Raises:
        MissingToolError: apt-get is missing, or we are not root.
        InstallError: apt-get failed (message has ``<stack>/redis/install.log`` and its tail).
    """
    manual = (
        f"Install Redis 6+ yourself (Debian/Ubuntu: apt-get install {REDIS_PACKAGE}) and put "
        f"{_BINARY} on PATH."
    )
    return apt_install(
        REDIS_PACKAGE,
        find=redis_binary,
        absent=f"`{_BINARY}` is not on PATH",
        manual=manual,
        log_path=redis_state_dir() / "install.log",
        lock_path=cache_home() / f".{NAME}-apt.lock",
        reporter=reporter if reporter is not None else Reporter(),
    )


def redis_ready(port: int | None = None, timeout: float = 1.0) -> bool:
    """Whether a Redis on 127.0.0.1:``port`` answers PING with PONG (without a password)."""
    target = port if port is not None else redis_port()
    try:
        with socket.create_connection((HOST, target), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_PING)
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")


def _prepare(reporter: Reporter) -> None:
    redis_state_dir().mkdir(parents=True, exist_ok=True)


def _process() -> ManagedProcess:
    state = redis_state_dir()
    return ManagedProcess(
        name=NAME,
        argv=redis_argv(state, redis_port()),
        log_path=state / "redis.log",
        pid_path=state / "redis.pid",
        cwd=state,
        ready=redis_ready,
    )


def _installed() -> bool:
    return redis_binary() is not None


def redis_component() -> Component:
    """Redis described for the generic lifecycle (port read from the environment now)."""
    port = redis_port()
    version = redis_version()
    binary = redis_binary()
    return Component(
        name=NAME,
        title=f"Redis {version}" if version else "Redis",
        version=version or REDIS_PACKAGE,
        # A system package: where its binary lives, not a directory of ours.
        install_dir=binary.parent if binary is not None else Path("/usr/bin"),
        state_dir=redis_state_dir(),
        port=port,
        endpoint=redis_url(),
        ports={"client": port},
        probe=redis_ready,
        install=install_redis,
        prepare=_prepare,
        process=_process(),
        start_timeout=_START_TIMEOUT_S,
        installed=_installed,
    )


def ensure_redis(reporter: Reporter | None = None) -> EnsureResult:
    """Make Redis answer PING on :func:`redis_url`: reuse a ready one, else install + start.

    Raises:
        StackError: See :func:`ragstream_cli.stack.components.ensure_component`.
    """
    result = ensure_component(redis_component(), reporter)
    # The component was described before a first install could tell its version: look again.
    return dataclasses.replace(result, status=redis_status())


def stop_redis(reporter: Reporter | None = None, timeout: float = 30.0) -> bool:
    """Stop the Redis this checkout started (SIGTERM, then SIGKILL); True if one was running."""
    return stop_component(redis_component(), reporter, timeout)


def redis_status() -> ComponentStatus:
    """Installed / running / managed state of Redis."""
    return component_status(redis_component())
