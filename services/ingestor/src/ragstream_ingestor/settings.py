"""The ingestor's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ragstream_common.settings import ServiceSettings

__all__ = ["IngestorSettings"]


class IngestorSettings(ServiceSettings):
    """Broker settings plus the chunking budget and the per-document limits.

    The budget is in the embedding model's word pieces and counts everything the embedder
    embeds for a chunk (title, heading path, text, special tokens); every chunk stays within
    ``chunk_max_tokens``, the overlap it repeats from the chunk before it included.
    """

    service_name: str = "ingestor"
    http_port: int = 8101
    consumer_group: str = "ingestor"
    # Documents waiting are taken up to this many at a time: handled in order, with what they
    # publish acknowledged once for the batch.
    batch_max_messages: int = Field(default=32, ge=1)
    # Bulk work, never on a query's path: a record waits up to 5 ms for others to the same
    # partition, so a batch's chunks and statuses leave in a few produce requests rather than one
    # each, and Kafka and every consumer downstream handle fewer, larger fetches (bench/README.md).
    kafka_linger_ms: int = Field(default=5, ge=0)
    # all-MiniLM-L6-v2 reads at most 256 word pieces and silently drops the rest; the app
    # refuses to start with a budget above the model's limit.
    chunk_max_tokens: int = Field(default=256, ge=32)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_document_bytes: int = Field(default=5_000_000, ge=1)
    # Text documents up to this many characters are chunked on the event loop: a trip to a
    # worker thread costs about a millisecond of CPU on a busy machine, as much as chunking 3 KB
    # of text (bench/README.md), while a longer one would hold the loop, and the batch's other
    # records, for longer. 0 sends every document to the thread.
    inline_chunking_max_chars: int = Field(default=8192, ge=0)
    # One version travels as one Kafka message of at most 8 MiB, and a chunk with its
    # 384-dimension vector costs about 9 KB downstream.
    max_chunks_per_document: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _overlap_leaves_room(self) -> Self:
        # An overlap near the budget would leave little room for new text in a chunk.
        if self.chunk_overlap_tokens >= self.chunk_max_tokens // 2:
            raise ValueError("chunk_overlap_tokens must be below half of chunk_max_tokens")
        return self
