"""The gateway's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

import os
import secrets
import socket

from pydantic import Field

from ragstream_common.settings import ServiceSettings

__all__ = ["GatewaySettings", "new_instance_id"]


def new_instance_id() -> str:
    """Return an id unique to this process: ``gateway-<hostname>-<pid>-<random>``.

    The random suffix keeps two processes apart even when a container restarts with the same
    hostname and pid, so a restarted replica never picks up answers meant for its predecessor.
    """
    return f"gateway-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class GatewaySettings(ServiceSettings):
    """HTTP, request/reply and size-limit settings of the public API."""

    service_name: str = "gateway"
    http_port: int = 8000

    # This replica's reply route: QueryRequested.reply_to, and the key of the answers meant for it.
    instance_id: str = Field(default_factory=new_instance_id, min_length=1, max_length=200)
    # How long POST /v1/query waits for its answer before giving up with a 504.
    query_timeout_s: float = Field(default=30.0, gt=0)
    # The largest document content accepted, in UTF-8 bytes (413 above it).
    max_document_bytes: int = Field(default=5_000_000, ge=1)
    # How long a publish may take before Kafka counts as unavailable (503); the producer's own
    # timeouts are far longer than an HTTP client should wait.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # How long startup may wait for the reply consumer's partitions and positions before the
    # process gives up (and is restarted), instead of serving queries it could lose answers for.
    startup_timeout_s: float = Field(default=30.0, gt=0)
