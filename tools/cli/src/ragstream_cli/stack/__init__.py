"""Local infrastructure for ragstream without Docker: Kafka, Weaviate and Redis as processes.

Typical use (pytest fixture or CLI)::

    from ragstream_cli.stack import ensure_kafka, ensure_redis, ensure_weaviate, kafka_bootstrap

    ensure_kafka()      # installs on first use, reuses a running broker, else starts one
    ensure_weaviate()
    ensure_redis()      # the embedding cache; installed with apt-get when missing
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
    redis_port,
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
from ragstream_cli.stack.redis import (
    ensure_redis,
    install_redis,
    redis_ready,
    redis_status,
    redis_url,
    stop_redis,
)
from ragstream_cli.stack.weaviate import (
    ensure_weaviate,
    install_weaviate,
    stop_weaviate,
    weaviate_api_key,
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
    "ensure_redis",
    "ensure_stack",
    "ensure_weaviate",
    "install_kafka",
    "install_redis",
    "install_weaviate",
    "kafka_bootstrap",
    "kafka_ports",
    "kafka_ready",
    "kafka_status",
    "redis_port",
    "redis_ready",
    "redis_status",
    "redis_url",
    "stack_dir",
    "status",
    "stop_kafka",
    "stop_redis",
    "stop_stack",
    "stop_weaviate",
    "weaviate_api_key",
    "weaviate_ports",
    "weaviate_ready",
    "weaviate_status",
    "weaviate_url",
]


def ensure_stack(reporter: Reporter | None = None) -> dict[str, EnsureResult]:
    """Ensure Kafka, Weaviate then Redis are up (see :func:`ensure_kafka`); results by name."""
    rep = reporter if reporter is not None else Reporter()
    return {
        "kafka": ensure_kafka(rep),
        "weaviate": ensure_weaviate(rep),
        "redis": ensure_redis(rep),
    }


def stop_stack(reporter: Reporter | None = None, timeout: float = 30.0) -> dict[str, bool]:
    """Stop whatever of Kafka, Weaviate and Redis this checkout started; True where stopped."""
    rep = reporter if reporter is not None else Reporter()
    return {
        "redis": stop_redis(rep, timeout),
        "weaviate": stop_weaviate(rep, timeout),
        "kafka": stop_kafka(rep, timeout),
    }


def status() -> dict[str, ComponentStatus]:
    """Per-component state (installed?, running?, managed by us?, pid, port), keyed by name."""
    return {"kafka": kafka_status(), "weaviate": weaviate_status(), "redis": redis_status()}
