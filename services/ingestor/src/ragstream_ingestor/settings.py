"""The ingestor's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ragstream_common.settings import ServiceSettings

__all__ = ["IngestorSettings"]


class IngestorSettings(ServiceSettings):
    """Broker settings plus the chunking budget.

    The budget is in whitespace-separated words for now; every chunk stays within
    ``chunk_max_words`` including the overlap it repeats from the chunk before it.
    """

    service_name: str = "ingestor"
    http_port: int = 8101
    chunk_max_words: int = Field(default=150, ge=8)
    chunk_overlap_words: int = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _overlap_leaves_room(self) -> Self:
        # An overlap as large as the budget would leave no room for new text in a chunk.
        if self.chunk_overlap_words >= self.chunk_max_words:
            raise ValueError("chunk_overlap_words must be smaller than chunk_max_words")
        return self
