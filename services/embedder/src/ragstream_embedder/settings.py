"""The embedder's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator

from ragstream_common.settings import ServiceSettings

__all__ = ["EmbedderSettings"]

_THIRTY_DAYS_S = 30 * 24 * 3600


class EmbedderSettings(ServiceSettings):
    """Broker settings plus micro-batching, model placement and the shared embedding cache.

    ``batch_max_messages`` and ``batch_max_wait_ms`` are the knob between latency and throughput:
    a batch is handed to the model when it holds that many ``chunks`` records, or when that long
    has passed with fewer.

    ``redis_url`` turns the embedding cache on: every replica reads and fills the same Redis, so a
    text is embedded once per model version, whichever replica sees it first.
    """

    service_name: str = "embedder"
    http_port: int = 8102
    # Measured on all-MiniLM-L6-v2 over 256-token chunks, 2 cores (bench/README.md): calls over
    # more texts sort them by length and pad less, and passes of 16 beat passes of 32 by ~10%.
    batch_max_messages: int = Field(default=64, ge=1)
    batch_max_wait_ms: int = Field(default=20, ge=0)
    # Bulk work, never on a query's path (the retriever embeds queries itself): as the ingestor's,
    # a part's embeddings and statuses leave in a few produce requests (bench/README.md).
    kafka_linger_ms: int = Field(default=5, ge=0)
    # Texts per forward pass inside one model call.
    model_batch_size: int = Field(default=16, ge=1)
    # A batch's chunks go to the model in calls of about this many, each call's documents
    # published as soon as it is done (a document is never split across calls).
    model_call_max_texts: int = Field(default=48, ge=1)
    model_device: str = "cpu"
    # The cores the model uses: on CPU, that many single-threaded forward passes run at once;
    # None: torch's default (all cores).
    model_threads: int | None = Field(default=None, ge=1)
    # None (or empty): no cache, every chunk is embedded.
    redis_url: str | None = None
    # A vector unused this long leaves the cache (Redis's LRU may evict it sooner).
    embedding_cache_ttl_s: int = Field(default=_THIRTY_DAYS_S, ge=1)
    # Connect and read timeout of a cache call (retried once): a hung Redis delays one batch by
    # about twice this, then the cool-down below spares the next ones.
    embedding_cache_timeout_s: float = Field(default=0.5, gt=0)
    # After a cache failure, batches skip the cache this long instead of waiting on it each time.
    embedding_cache_cooldown_s: float = Field(default=10.0, ge=0)

    @field_validator("redis_url")
    @classmethod
    def _empty_url_means_no_cache(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None
