"""Weaviate as a local process, built from source with ``go install`` via the Go module proxy.

Install: ``CGO_ENABLED=0 GOBIN=<install>/bin go install <module>@<version>`` (several minutes
cold; seconds once the Go module and build caches are warm). Run: ``weaviate-server`` on
127.0.0.1 with every cluster port pinned and modules/telemetry off.

Weaviate binds its gRPC API and its cluster API to every interface, whatever its REST host (no
setting moves them), so the local node does not serve anonymous callers: every API asks for this
checkout's key, and the debug listener, also on every interface, is off.

State in ``<stack>/weaviate/``: ``data/`` (PERSISTENCE_DATA_PATH, includes the Raft log),
``api-key`` (the key, readable by its owner only), ``weaviate.log`` (its JSON log lines),
``weaviate.pid``, ``install.log``.
"""

from __future__ import annotations

import os
import secrets
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
from ragstream_cli.stack.config import (
    HOST,
    WEAVIATE_CLUSTER_HOSTNAME,
    WEAVIATE_MODULE,
    WEAVIATE_VERSION,
    WeaviatePorts,
    weaviate_ports,
)
from ragstream_cli.stack.errors import InstallError, StackError
from ragstream_cli.stack.install import atomic_install, is_installed, require_tool, run_logged
from ragstream_cli.stack.paths import component_dir, install_dir
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter

__all__ = [
    "WEAVIATE_USER",
    "check_weaviate_key",
    "ensure_weaviate",
    "install_weaviate",
    "stop_weaviate",
    "weaviate_api_key",
    "weaviate_binary",
    "weaviate_component",
    "weaviate_env",
    "weaviate_headers",
    "weaviate_install_dir",
    "weaviate_ready",
    "weaviate_state_dir",
    "weaviate_status",
    "weaviate_url",
]

NAME = "weaviate"
# The one user the local node knows; its key is in ``<stack>/weaviate/api-key``.
WEAVIATE_USER = "ragstream"
_BINARY = "weaviate-server"
_API_KEY_FILE = "api-key"
# First start replays nothing, but a restart with many shards loads them before reporting ready.
_START_TIMEOUT_S = 180.0


def weaviate_install_dir() -> Path:
    """Machine-wide install directory: ``<RAGSTREAM_HOME>/weaviate-<version>``."""
    return install_dir(NAME, WEAVIATE_VERSION)


def weaviate_binary() -> Path:
    """Path of the installed ``weaviate-server`` binary (may not exist yet)."""
    return weaviate_install_dir() / "bin" / _BINARY


def weaviate_state_dir() -> Path:
    """Per-checkout state directory: ``<stack dir>/weaviate``."""
    return component_dir(NAME)


def weaviate_url() -> str:
    """REST base URL, e.g. ``http://127.0.0.1:8080`` (gRPC is on ``weaviate_ports().grpc``)."""
    return f"http://{HOST}:{weaviate_ports().http}"


def weaviate_api_key() -> str:
    """Return this checkout's key to the local Weaviate, made on first use.

    A random secret in ``<stack>/weaviate/api-key``, readable by its owner only. The services
    get it as ``RAGSTREAM_WEAVIATE_API_KEY``.
    """
    path = weaviate_state_dir() / _API_KEY_FILE
    if not path.is_file():
        # Written whole under a name of our own, then linked into place: a reader never sees a
        # half-written key, and of two processes making one at once, the first link wins.
        draft = path.with_name(f".{_API_KEY_FILE}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()


def weaviate_headers(api_key: str) -> dict[str, str]:
    """HTTP headers that present ``api_key`` to Weaviate's REST API."""
    return {"Authorization": f"Bearer {api_key}"}


def weaviate_env(data_dir: Path, ports: WeaviatePorts, api_key: str) -> dict[str, str]:
    """Environment for ``weaviate-server``: single node, a key for every API, no modules, no
    telemetry, no debug listener.

    Args:
        data_dir: Where it keeps its data.
        ports: Where it listens.
        api_key: The key every API asks for (``weaviate_api_key``).
    """
    return {
        "PERSISTENCE_DATA_PATH": data_dir.as_posix(),
        "DEFAULT_VECTORIZER_MODULE": "none",
        # Vectors come from our own embedder: no module may call out to a hosted API, and not
        # registering the ~40 API-based modules keeps the process smaller.
        "API_BASED_MODULES_DISABLED": "true",
        # gRPC listens on every interface (see the module docstring): a caller needs the key.
        # With no authorization module, a known key may do everything.
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS": api_key,
        "AUTHENTICATION_APIKEY_USERS": WEAVIATE_USER,
        "AUTHORIZATION_ADMINLIST_ENABLED": "false",
        "DISABLE_TELEMETRY": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        # The hostname is the Raft node id: it must not change between restarts.
        "CLUSTER_HOSTNAME": WEAVIATE_CLUSTER_HOSTNAME,
        # Memberlist's local profile, bound to loopback: no need for a private network address.
        "CLUSTER_IN_LOCALHOST": "true",
        "CLUSTER_BIND_ADDR": HOST,
        "CLUSTER_GOSSIP_BIND_PORT": str(ports.gossip),
        "CLUSTER_DATA_BIND_PORT": str(ports.data),
        # The cluster API (the data port) listens on every interface too.
        "CLUSTER_BASIC_AUTH_USERNAME": WEAVIATE_USER,
        "CLUSTER_BASIC_AUTH_PASSWORD": api_key,
        "RAFT_PORT": str(ports.raft),
        "RAFT_INTERNAL_RPC_PORT": str(ports.raft_rpc),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        # Weaviate multiplies Raft timeouts by 5 by default, so a lone node waits 5-10 s before
        # electing itself. A one-voter cluster cannot lose its quorum to a slow peer, so the
        # production margin buys nothing here; 1 brings startup from ~8 s to ~3 s.
        "RAFT_TIMEOUTS_MULTIPLIER": "1",
        "GRPC_PORT": str(ports.grpc),
        # pprof and friends, on every interface; nothing here reads them.
        "GO_PROFILING_DISABLE": "true",
        "PROMETHEUS_MONITORING_ENABLED": "false",
        "LOG_LEVEL": "warning",
    }


def install_weaviate(reporter: Reporter | None = None) -> Path:
    """Build ``weaviate-server`` into :func:`weaviate_install_dir` unless already there.

    Raises:
        MissingToolError: go is missing.
        InstallError: The build failed (message has ``<stack>/weaviate/install.log`` and its tail).
    """
    target = weaviate_install_dir()
    if is_installed(target):
        return target
    rep = reporter if reporter is not None else Reporter()
    go = require_tool(
        "go",
        f"build Weaviate {WEAVIATE_VERSION}",
        "Install Go 1.26+ from https://go.dev/dl/ (or your package manager) and put it on PATH.",
    )
    log_path = weaviate_state_dir() / "install.log"

    def build(tmp: Path) -> None:
        run_logged(
            [go, "install", f"{WEAVIATE_MODULE}@{WEAVIATE_VERSION}"],
            log_path=log_path,
            title=(
                f"Building Weaviate {WEAVIATE_VERSION} with go install "
                "(first time only, several minutes)"
            ),
            reporter=rep,
            cwd=tmp,
            # CGO off: a static binary with no C toolchain needed; GOBIN: straight into the
            # temp install dir, never into the user's ~/go/bin.
            env={"CGO_ENABLED": "0", "GOBIN": str(tmp / "bin")},
        )
        if not (tmp / "bin" / _BINARY).is_file():
            raise InstallError(
                f"go install finished but {_BINARY} is not in {tmp / 'bin'}", log_path=log_path
            )

    atomic_install(target, build, f"{WEAVIATE_MODULE}@{WEAVIATE_VERSION} via go install")
    return target


def weaviate_ready(url: str | None = None, timeout: float = 2.0) -> bool:
    """Whether ``GET <url>/v1/.well-known/ready`` answers 200."""
    base = url if url is not None else weaviate_url()
    try:
        response = httpx.get(f"{base}/v1/.well-known/ready", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def check_weaviate_key(url: str) -> None:
    """Raise unless the Weaviate at ``url`` takes this checkout's key.

    Raises:
        StackError: It refuses the key: a node started without it (by an older checkout, say),
            which every client of this one would find closed.
    """
    response = httpx.get(
        f"{url}/v1/meta", headers=weaviate_headers(weaviate_api_key()), timeout=10.0
    )
    if response.status_code in (401, 403):
        raise StackError(
            f"Weaviate at {url} refuses this checkout's key ({weaviate_state_dir() / _API_KEY_FILE})"
            f": HTTP {response.status_code}. It was started without it, by an older version or"
            " another checkout. Stop it and start it again: `make down`, then `make up`."
        )


def _prepare(reporter: Reporter) -> None:
    (weaviate_state_dir() / "data").mkdir(parents=True, exist_ok=True)


def _process() -> ManagedProcess:
    state = weaviate_state_dir()
    ports = weaviate_ports()
    return ManagedProcess(
        name="weaviate",
        argv=[
            str(weaviate_binary()),
            "--host",
            HOST,
            "--port",
            str(ports.http),
            "--scheme",
            "http",
        ],
        env=weaviate_env(state / "data", ports, weaviate_api_key()),
        log_path=state / "weaviate.log",
        pid_path=state / "weaviate.pid",
        cwd=state,
        ready=weaviate_ready,
    )


def weaviate_component() -> Component:
    """Weaviate described for the generic lifecycle (ports read from the environment now)."""
    ports = weaviate_ports()
    return Component(
        name=NAME,
        title=f"Weaviate {WEAVIATE_VERSION}",
        version=WEAVIATE_VERSION,
        install_dir=weaviate_install_dir(),
        state_dir=weaviate_state_dir(),
        port=ports.http,
        endpoint=weaviate_url(),
        ports={
            "http": ports.http,
            "grpc": ports.grpc,
            "gossip": ports.gossip,
            "data": ports.data,
            "raft": ports.raft,
            "raft rpc": ports.raft_rpc,
        },
        probe=weaviate_ready,
        install=install_weaviate,
        prepare=_prepare,
        process=_process(),
        start_timeout=_START_TIMEOUT_S,
    )


def ensure_weaviate(reporter: Reporter | None = None) -> EnsureResult:
    """Make Weaviate answer on :func:`weaviate_url`: reuse a ready one, else install + start.

    Raises:
        StackError: See :func:`ragstream_cli.stack.components.ensure_component`.
    """
    result = ensure_component(weaviate_component(), reporter)
    check_weaviate_key(weaviate_url())
    return result


def stop_weaviate(reporter: Reporter | None = None, timeout: float = 30.0) -> bool:
    """Stop the Weaviate this checkout started (SIGTERM, then SIGKILL); True if one was running."""
    return stop_component(weaviate_component(), reporter, timeout)


def weaviate_status() -> ComponentStatus:
    """Installed / running / managed state of Weaviate."""
    return component_status(weaviate_component())
