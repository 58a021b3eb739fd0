"""Pinned versions and network ports of the local stack: the one place to change them.

Ports are read from the environment at call time (not import time) so that a test or a second
checkout can move a component with ``RAGSTREAM_<COMPONENT>_<PORT>=...`` without reloading modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ragstream_cli.stack.errors import StackError

__all__ = [
    "HOST",
    "KAFKA_CLUSTER_NODE_ID",
    "KAFKA_VERSION",
    "LOG4J_SLF4J_VERSION",
    "MIN_JAVA_MAJOR",
    "REDIS_MAXMEMORY",
    "REDIS_PACKAGE",
    "SCALA_VERSION",
    "WEAVIATE_CLUSTER_HOSTNAME",
    "WEAVIATE_MODULE",
    "WEAVIATE_VERSION",
    "KafkaPorts",
    "WeaviatePorts",
    "env_port",
    "kafka_ports",
    "redis_port",
    "weaviate_ports",
]

# Everything binds to loopback: this is a developer/CI stack, never reachable from the network.
HOST = "127.0.0.1"

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# Kafka's POM leaves the SLF4J binding out on purpose; without one the broker logs nothing.
LOG4J_SLF4J_VERSION = "2.24.3"
MIN_JAVA_MAJOR = 17
KAFKA_CLUSTER_NODE_ID = 1

WEAVIATE_VERSION = "v1.39.0"
WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
# Weaviate uses the hostname as its Raft node id: it must stay the same across restarts or the
# node no longer recognises its own Raft log.
WEAVIATE_CLUSTER_HOSTNAME = "ragstream-node1"

# Redis comes from the distribution's packages (Debian's redis-server), not pinned by us: the
# embedding cache needs nothing beyond Redis 6 (MGET, SET with EX, pipelines).
REDIS_PACKAGE = "redis-server"
# The cache is a cache: past this, Redis evicts the least recently used vectors.
REDIS_MAXMEMORY = "512mb"


def env_port(var: str, default: int) -> int:
    """Return the TCP port in environment variable ``var``, or ``default`` when it is unset.

    Raises:
        StackError: The variable is set but is not a port number.
    """
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{var}={port} is outside 1..65535")
    return port


@dataclass(frozen=True)
class KafkaPorts:
    """Ports of the single-node KRaft broker+controller."""

    broker: int
    controller: int


@dataclass(frozen=True)
class WeaviatePorts:
    """Every port a single Weaviate node listens on (six: its debug listener is turned off)."""

    http: int
    grpc: int
    gossip: int
    data: int
    raft: int
    raft_rpc: int


def kafka_ports() -> KafkaPorts:
    """Kafka ports: defaults 9092/9093, overridable with RAGSTREAM_KAFKA_[CONTROLLER_]PORT."""
    return KafkaPorts(
        broker=env_port("RAGSTREAM_KAFKA_PORT", 9092),
        controller=env_port("RAGSTREAM_KAFKA_CONTROLLER_PORT", 9093),
    )


def redis_port() -> int:
    """Redis's client port: default 6379, overridable with RAGSTREAM_REDIS_PORT."""
    return env_port("RAGSTREAM_REDIS_PORT", 6379)


def weaviate_ports() -> WeaviatePorts:
    """Weaviate ports: defaults 8080/50051/7100/7101/8300/8301, each overridable by env."""
    return WeaviatePorts(
        http=env_port("RAGSTREAM_WEAVIATE_PORT", 8080),
        grpc=env_port("RAGSTREAM_WEAVIATE_GRPC_PORT", 50051),
        gossip=env_port("RAGSTREAM_WEAVIATE_GOSSIP_PORT", 7100),
        data=env_port("RAGSTREAM_WEAVIATE_DATA_PORT", 7101),
        raft=env_port("RAGSTREAM_WEAVIATE_RAFT_PORT", 8300),
        raft_rpc=env_port("RAGSTREAM_WEAVIATE_RAFT_RPC_PORT", 8301),
    )
