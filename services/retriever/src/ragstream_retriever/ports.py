"""What the handlers need from the outside world, as protocols the adapters and fakes implement."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from ragstream_retriever.domain import (
    DocumentRecord,
    IndexedChunk,
    LiveVersion,
    MetadataFilter,
    SearchHit,
)

__all__ = ["ChunkIndex", "QueryEmbedder"]


class ChunkIndex(Protocol):
    """The chunk store: per-document version records, chunk objects per version, hybrid search."""

    async def document_records(
        self, tenant: str, doc_ids: Collection[str]
    ) -> dict[str, DocumentRecord]:
        """Return the version records of those of ``doc_ids`` that have one, in one lookup."""
        ...

    async def live_versions(self, tenant: str, doc_ids: Collection[str]) -> dict[str, LiveVersion]:
        """Return the live versions of those of ``doc_ids`` that have a record, in one lookup."""
        ...

    async def write_records(self, records: Sequence[DocumentRecord]) -> None:
        """Replace each record's document record with it (one write per tenant, not per record)."""
        ...

    async def insert(self, chunks: Sequence[IndexedChunk]) -> None:
        """Write ``chunks`` under their object ids (writing an id again overwrites it)."""
        ...

    async def delete_other_versions(self, tenant: str, keep: Mapping[str, int]) -> int:
        """Delete each document's chunks of every version but ``keep[doc_id]``; return how many."""
        ...

    async def search(
        self,
        *,
        tenant: str,
        text: str,
        vector: Sequence[float],
        alpha: float,
        limit: int,
        filters: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        """Return up to ``limit`` of the tenant's chunks matching ``filters`` (None: all), any version.

        Implementations scope the search to ``tenant`` themselves: it is not a filter the
        caller may forget or a client may override.
        """
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
