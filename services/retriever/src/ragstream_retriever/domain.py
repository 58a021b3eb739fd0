"""The retriever's decisions, as plain functions: no I/O, no SDKs, no Kafka.

Object identity, which document versions may be applied, what one chunk looks like in the index,
how search candidates are trimmed to a context, and the events the handlers publish.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentStatus,
    QueryRequested,
    RetrievedChunk,
)

__all__ = [
    "OBJECT_ID_NAMESPACE",
    "IndexedChunk",
    "InvalidEmbeddingsError",
    "SearchHit",
    "as_utc",
    "build_context",
    "candidate_limit",
    "chunk_object_id",
    "chunks_to_index",
    "document_object_id",
    "document_status",
    "freshness_seconds",
    "is_current_version",
    "select_chunks",
]

# Fixed forever: changing it would give every chunk a new id and orphan the whole index.
OBJECT_ID_NAMESPACE = uuid.UUID("5b0f2d8e-6c1a-4c55-9a57-7c0e2f1d9b31")


class InvalidEmbeddingsError(ValueError):
    """A ChunksEmbedded message that can never be indexed as it stands (a contract violation)."""


def chunk_object_id(tenant: str, doc_id: str, chunk_id: str) -> uuid.UUID:
    """Return the Weaviate object id of one chunk: the same inputs always give the same id.

    The parts are JSON-encoded, not joined with a separator, so that no choice of ids can make
    two different triples collide (``("a:b", "c")`` versus ``("a", "b:c")``).

    Args:
        tenant: The tenant owning the document.
        doc_id: The document id.
        chunk_id: The chunk id, unique within the document.
    """
    return uuid.uuid5(OBJECT_ID_NAMESPACE, json.dumps(["chunk", tenant, doc_id, chunk_id]))


def document_object_id(tenant: str, doc_id: str) -> uuid.UUID:
    """Return the object id of a document's version record (one per tenant and document).

    Args:
        tenant: The tenant owning the document.
        doc_id: The document id.
    """
    return uuid.uuid5(OBJECT_ID_NAMESPACE, json.dumps(["document", tenant, doc_id]))


def is_current_version(incoming: int, indexed: int | None) -> bool:
    """Return whether a document version may be applied given the highest one already indexed.

    An equal version is applied again (a redelivery must be idempotent, not skipped, in case the
    first attempt failed half-way); only a strictly older version is stale.

    Args:
        incoming: The version carried by the message.
        indexed: The highest version the index has seen for the document, None if none.
    """
    return indexed is None or incoming >= indexed


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """One chunk as the index stores it: its deterministic id, properties and vector."""

    object_id: uuid.UUID
    tenant: str
    doc_id: str
    chunk_id: str
    title: str
    source: str
    text: str
    heading_path: tuple[str, ...]
    position: int
    version: int
    content_hash: str
    model: str
    published_at: datetime
    vector: tuple[float, ...]

    def properties(self) -> dict[str, Any]:
        """Return the stored properties (everything but the id and the vector)."""
        return {
            "tenant": self.tenant,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "title": self.title,
            "source": self.source,
            "text": self.text,
            "heading_path": list(self.heading_path),
            "position": self.position,
            "version": self.version,
            "content_hash": self.content_hash,
            "model": self.model,
            "published_at": self.published_at,
        }


def chunks_to_index(event: ChunksEmbedded, dimensions: int) -> list[IndexedChunk]:
    """Turn one embedded document version into the objects to upsert, checking the contract.

    Args:
        event: The document version with its vectors.
        dimensions: The vector size of the query model; any other size could never be searched.

    Raises:
        InvalidEmbeddingsError: A chunk belongs to another document, a chunk id repeats, or a
            vector has the wrong size.
    """
    foreign = sorted({chunk.doc_id for chunk in event.chunks} - {event.doc_id})
    if foreign:
        raise InvalidEmbeddingsError(
            f"document {event.doc_id!r} carries chunks of other documents: {foreign[:5]}"
        )
    repeated = sorted(cid for cid, n in Counter(c.chunk_id for c in event.chunks).items() if n > 1)
    if repeated:
        raise InvalidEmbeddingsError(f"document {event.doc_id!r} repeats chunk ids {repeated[:5]}")
    wrong_size = [chunk.chunk_id for chunk in event.chunks if len(chunk.vector) != dimensions]
    if wrong_size:
        raise InvalidEmbeddingsError(
            f"document {event.doc_id!r} has vectors not of size {dimensions} "
            f"(model {event.model!r}): chunks {wrong_size[:5]}"
        )
    published_at = as_utc(event.published_at)
    return [
        IndexedChunk(
            object_id=chunk_object_id(event.tenant, event.doc_id, chunk.chunk_id),
            tenant=event.tenant,
            doc_id=event.doc_id,
            chunk_id=chunk.chunk_id,
            title=event.title,
            source=event.source,
            text=chunk.text,
            heading_path=tuple(chunk.heading_path),
            position=chunk.position,
            version=event.version,
            content_hash=chunk.content_hash,
            model=event.model,
            published_at=published_at,
            vector=tuple(chunk.vector),
        )
        for chunk in event.chunks
    ]


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC, reading a naive datetime as UTC (what producers mean by it)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def freshness_seconds(published_at: datetime, now: datetime) -> float:
    """Return how long a document took from publication to the index, never negative.

    Clocks of producer and retriever may disagree by a little; a negative age is clock skew, not
    time travel, and would corrupt a histogram.

    Args:
        published_at: When the producer published the document.
        now: When the index applied it.
    """
    return max(0.0, (as_utc(now) - as_utc(published_at)).total_seconds())


def document_status(event: ChunksEmbedded) -> DocumentStatus:
    """Return the status to publish once ``event`` is applied: indexed, or deleted if empty.

    Args:
        event: The document version the index now holds.
    """
    return DocumentStatus(
        doc_id=event.doc_id,
        tenant=event.tenant,
        stage="indexed" if event.chunks else "deleted",
        version=event.version,
        chunk_count=len(event.chunks),
        published_at=event.published_at,
    )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One candidate returned by the index for a query, before ranking and dedup."""

    chunk_id: str
    doc_id: str
    title: str
    text: str
    position: int
    heading_path: tuple[str, ...]
    score: float


def candidate_limit(top_k: int, overfetch: int, cap: int) -> int:
    """Return how many candidates to ask the index for, so dedup can still fill ``top_k``.

    Args:
        top_k: How many chunks the query wants.
        overfetch: The multiplier over ``top_k``.
        cap: The most candidates worth fetching for one query.
    """
    return max(top_k, min(top_k * overfetch, cap))


def select_chunks(
    hits: Iterable[SearchHit], *, top_k: int, max_per_doc: int
) -> list[RetrievedChunk]:
    """Rank candidates by score and keep the best ``top_k``, at most ``max_per_doc`` per document.

    Ties keep the index's order (the sort is stable), and a chunk returned twice counts once.

    Args:
        hits: The index's candidates, in any order.
        top_k: How many chunks to keep.
        max_per_doc: How many chunks of one document may appear.
    """
    per_doc: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    selected: list[RetrievedChunk] = []
    for hit in sorted(hits, key=lambda candidate: candidate.score, reverse=True):
        if len(selected) == top_k:
            break
        identity = (hit.doc_id, hit.chunk_id)
        if identity in seen or per_doc[hit.doc_id] >= max_per_doc:
            continue
        seen.add(identity)
        per_doc[hit.doc_id] += 1
        selected.append(
            RetrievedChunk(
                chunk_id=hit.chunk_id,
                doc_id=hit.doc_id,
                title=hit.title,
                text=hit.text,
                position=hit.position,
                heading_path=list(hit.heading_path),
                score=hit.score,
            )
        )
    return selected


def build_context(
    query: QueryRequested, chunks: Sequence[RetrievedChunk], timings: Mapping[str, float]
) -> ContextRetrieved:
    """Return the event carrying ``query`` and its ranked chunks (possibly none) to the generator.

    Args:
        query: The query as requested.
        chunks: The ranked, deduplicated chunks.
        timings: Milliseconds per step, for the answer's audit trail.
    """
    return ContextRetrieved(
        query=query,
        chunks=list(chunks),
        timings={name: round(value, 3) for name, value in timings.items()},
    )
