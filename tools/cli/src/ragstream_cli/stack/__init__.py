"""Local infrastructure for ragstream without Docker: Kafka and Weaviate as plain processes.

Typical use (pytest fixture or CLI)::

    from ragstream_cli.stack import ensure_kafka, ensure_weaviate, kafka_bootstrap

    ensure_kafka()      # installs on first use, reuses a running broker, else starts one
    ensure_weaviate()
    bootstrap = kafka_bootstrap()

Installs are shared per machine (``$RAGSTREAM_HOME``, default ``~/.cache/ragstream``); data,
logs and pid files are per checkout (``<repo>/.stack`` or ``$RAGSTREAM_STACK_DIR``).
"""

from __future__ import annotations

from ragstream_cli.stack.components import ComponentStatus, EnsureResult
from ragstream_cli.stack.config import (
    KAFKA_VERSION,
    WEAVIATE_VERSION,
    KafkaPorts,
    WeaviatePorts,
    kafka_ports,
    weaviate_ports,
)
from ragstream_cli.stack.errors import (
    InstallError,
    MissingToolError,
    PortInUseError,
    ProcessDiedError,
    ReadyTimeoutError,
    StackError,
)
from ragstream_cli.stack.kafka import (
    ensure_kafka,
    install_kafka,
    kafka_bootstrap,
    kafka_ready,
    kafka_status,
    stop_kafka,
)
from ragstream_cli.stack.paths import cache_home, stack_dir
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.weaviate import (
    ensure_weaviate,
    install_weaviate,
    stop_weaviate,
    weaviate_ready,
    weaviate_status,
    weaviate_url,
)

__all__ = [
    "KAFKA_VERSION",
    "WEAVIATE_VERSION",
    "ComponentStatus",
    "EnsureResult",
    "InstallError",
    "KafkaPorts",
    "ManagedProcess",
    "MissingToolError",
    "PortInUseError",
    "ProcessDiedError",
    "ReadyTimeoutError",
    "Reporter",
    "StackError",
    "WeaviatePorts",
    "cache_home",
    "ensure_kafka",
    "ensure_stack",
    "ensure_weaviate",
    "install_kafka",
    "install_weaviate",
    "kafka_bootstrap",
    "kafka_ports",
    "kafka_ready",
    "kafka_status",
    "stack_dir",
    "status",
    "stop_kafka",
    "stop_stack",
    "stop_weaviate",
    "weaviate_ports",
    "weaviate_ready",
    "weaviate_status",
    "weaviate_url",
]


def ensure_stack(reporter: Reporter | None = None) -> dict[str, EnsureResult]:
    """Ensure Kafka then Weaviate are up (see :func:`ensure_kafka`); results keyed by name."""
    rep = reporter if reporter is not None else Reporter()
    return {"kafka": ensure_kafka(rep), "weaviate": ensure_weaviate(rep)}


def stop_stack(reporter: Reporter | None = None, timeout: float = 30.0) -> dict[str, bool]:
    """Stop whatever of Kafka and Weaviate this checkout started; True where one was stopped."""
    rep = reporter if reporter is not None else Reporter()
    return {"weaviate": stop_weaviate(rep, timeout), "kafka": stop_kafka(rep, timeout)}


def status() -> dict[str, ComponentStatus]:
    """Per-component state (installed?, running?, managed by us?, pid, port), keyed by name."""
    return {"kafka": kafka_status(), "weaviate": weaviate_status()}
