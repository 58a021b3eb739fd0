"""The embedder's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from ragstream_common.settings import ServiceSettings

__all__ = ["EmbedderSettings"]


class EmbedderSettings(ServiceSettings):
    """Broker settings plus micro-batching and model placement.

    ``batch_max_messages`` and ``batch_max_wait_ms`` are the knob between latency and throughput:
    a batch is handed to the model when it holds that many ``chunks`` records, or when that long
    has passed with fewer.
    """

    service_name: str = "embedder"
    http_port: int = 8102
    batch_max_messages: int = Field(default=16, ge=1)
    batch_max_wait_ms: int = Field(default=20, ge=0)
    # Texts per forward pass inside one model call.
    model_batch_size: int = Field(default=32, ge=1)
    model_device: str = "cpu"
    # torch's intra-op threads; None keeps torch's default (all cores).
    model_threads: int | None = Field(default=None, ge=1)
