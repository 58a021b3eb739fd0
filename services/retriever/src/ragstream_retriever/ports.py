"""What the handlers need from the outside world, as protocols the adapters and fakes implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ragstream_retriever.domain import IndexedChunk, SearchHit

__all__ = ["ChunkIndex", "QueryEmbedder"]


class ChunkIndex(Protocol):
    """The chunk store: versioned upserts and deletes per document, hybrid search per tenant."""

    async def indexed_version(self, tenant: str, doc_id: str) -> int | None:
        """Return the highest version of the document the index has applied, deletions included."""
        ...

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        """Insert or overwrite ``chunks`` by their object ids."""
        ...

    async def delete_versions_below(self, tenant: str, doc_id: str, version: int) -> int:
        """Delete the document's chunks older than ``version``; return how many went."""
        ...

    async def record_version(
        self, tenant: str, doc_id: str, version: int, chunk_count: int
    ) -> None:
        """Remember ``version`` as the document's applied version, even when it has no chunks."""
        ...

    async def search(
        self, *, tenant: str, text: str, vector: Sequence[float], alpha: float, limit: int
    ) -> list[SearchHit]:
        """Return up to ``limit`` of the tenant's chunks by hybrid (BM25 + vector) relevance."""
        ...


class QueryEmbedder(Protocol):
    """The embedding model, as the query path uses it: awaited, computing off the event loop."""

    @property
    def dimensions(self) -> int:
        """The size of the vectors ``embed`` returns."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one normalised vector per text, without blocking the event loop."""
        ...
