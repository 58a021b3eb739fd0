"""The retriever's decisions, as plain functions: no I/O, no SDKs, no Kafka.

Object identity, what the index does with each incoming document version (the blue/green plan),
what one chunk looks like in the index, which search hits a reader may see, how candidates are
trimmed to a context, and the events the handlers publish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentStatus,
    QueryFilters,
    QueryRequested,
    RetrievedChunk,
)

__all__ = [
    "OBJECT_ID_NAMESPACE",
    "DocumentRecord",
    "IndexAction",
    "IndexPlan",
    "IndexedChunk",
    "InvalidEmbeddingsError",
    "LiveHits",
    "LiveVersion",
    "MetadataFilter",
    "PendingVersion",
    "SearchHit",
    "as_utc",
    "build_context",
    "candidate_limit",
    "chunk_object_id",
    "chunks_to_index",
    "document_object_id",
    "document_status",
    "freshness_seconds",
    "index_fingerprint",
    "is_tenant_name",
    "keep_live_versions",
    "metadata_filter",
    "next_search_limit",
    "plan_version",
    "resolve_option",
    "select_chunks",
    "version_rounds",
]

# Fixed forever: changing it would give every chunk a new id and orphan the whole index.
OBJECT_ID_NAMESPACE = uuid.UUID("5b0f2d8e-6c1a-4c55-9a57-7c0e2f1d9b31")


# Weaviate's rule for tenant names; every ragstream tenant is a Weaviate tenant (the gateway
# enforces a stricter form of the same rule on input).
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InvalidEmbeddingsError(ValueError):
    """A ChunksEmbedded message that can never be indexed as it stands (a contract violation)."""


def is_tenant_name(tenant: str) -> bool:
    """Return whether ``tenant`` can be a Weaviate tenant (letters, digits, '_', '-'; 1..64).

    Args:
        tenant: The ragstream tenant.
    """
    return _TENANT_NAME.fullmatch(tenant) is not None


def chunk_object_id(tenant: str, doc_id: str, version: int, chunk_id: str) -> uuid.UUID:
    """Return the Weaviate object id of one chunk of one version: same inputs, same id.

    The version is part of the identity, so the chunks of two versions of a document are distinct
    objects that coexist until the switch has happened and the old ones are retired; a redelivered
    version targets the objects it wrote the first time. The parts are JSON-encoded, not joined
    with a separator, so that no choice of ids can make two different tuples collide
    (``("a:b", "c")`` versus ``("a", "b:c")``).

    Args:
        tenant: The tenant owning the document.
        doc_id: The document id.
        version: The document version the chunk belongs to.
        chunk_id: The chunk id, unique within the document version.
    """
    return uuid.uuid5(OBJECT_ID_NAMESPACE, json.dumps(["chunk", tenant, doc_id, version, chunk_id]))


def document_object_id(tenant: str, doc_id: str) -> uuid.UUID:
    """Return the object id of a document's version record (one per tenant and document).

    Args:
        tenant: The tenant owning the document.
        doc_id: The document id.
    """
    return uuid.uuid5(OBJECT_ID_NAMESPACE, json.dumps(["document", tenant, doc_id]))


# --- the per-document version record and the plan for one incoming version ------------------


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """What the index remembers about one document, written as one object (so atomically).

    Args:
        tenant: The tenant owning the document.
        doc_id: The document id.
        latest_version: The highest version applied or skipped as unchanged: older ones are stale.
        live_version: The version whose chunks readers see (a deletion's version has none).
        live_doc_hash: The live version's document hash (None for a deletion).
        live_fingerprint: ``index_fingerprint`` of the live version (None for a deletion).
        live_chunk_count: How many chunks the live version has.
    """

    tenant: str
    doc_id: str
    latest_version: int
    live_version: int
    live_doc_hash: str | None
    live_fingerprint: str | None
    live_chunk_count: int


@dataclass(frozen=True, slots=True)
class LiveVersion:
    """What a reader needs of a document's record: the live version and its chunk count."""

    version: int
    chunk_count: int


class IndexAction(StrEnum):
    """What the index does with one incoming document version."""

    # Older than a version already applied: acknowledged, nothing written.
    STALE = "stale"
    # Same indexed content as the live version: only latest_version moves, no chunk is written.
    UNCHANGED = "unchanged"
    # New content (or a deletion): insert its chunks, switch the record to it, retire the rest.
    SWITCH = "switch"
    # The live version delivered again: the switch is done, so only the retirement is re-run.
    REAPPLY = "reapply"


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """The action for one version, and the record to write (None when the record stays as is)."""

    action: IndexAction
    record: DocumentRecord | None


def index_fingerprint(event: ChunksEmbedded) -> str | None:
    """Return a hash of everything the index would store for the version, bar version and time.

    Two versions with the same fingerprint would produce the same objects (text, title, source,
    tags, headings, positions, chunk ids, and vectors, which follow from the model and the text),
    so the later one can be skipped without writing anything. ``doc_hash`` alone does not say so:
    a new title, new tags, a new chunker setting or a new embedding model leaves the content, and
    so the hash, as it was. None when the embedder sent no ``doc_hash``: never call that unchanged.

    Args:
        event: The document version with its vectors.
    """
    if event.doc_hash is None:
        return None
    identity = [
        event.doc_hash,
        event.title,
        event.source,
        sorted(set(event.tags)),
        event.model,
        [
            [chunk.chunk_id, chunk.content_hash, chunk.position, chunk.heading_path]
            for chunk in event.chunks
        ],
    ]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def plan_version(event: ChunksEmbedded, record: DocumentRecord | None) -> IndexPlan:
    """Decide what applying ``event`` means, given the document's record (None if it has none).

    In order:

    1. ``version < latest_version``: stale. A strictly older version never changes anything.
    2. ``version == live_version``: a redelivery of the live version. Its chunks were all written
       before the record was switched to it, so only the retirement of other versions is run
       again (a crash may have cut it short). This is why an equal version is not stale.
    3. The version has chunks and its fingerprint equals the live one: unchanged. Only
       ``latest_version`` moves (no write at all when it is already there, as on redelivery).
    4. Anything else: switch. Insert the chunks, write the record naming this version live (the
       single write readers switch on), then retire every other version's chunks. A version
       without chunks is a deletion and switches the same way, to nothing.

    Args:
        event: The incoming document version.
        record: The document's record as the index holds it.
    """
    fingerprint = index_fingerprint(event)
    switched = DocumentRecord(
        tenant=event.tenant,
        doc_id=event.doc_id,
        latest_version=event.version,
        live_version=event.version,
        live_doc_hash=event.doc_hash if event.chunks else None,
        live_fingerprint=fingerprint if event.chunks else None,
        live_chunk_count=len(event.chunks),
    )
    if record is None:
        return IndexPlan(IndexAction.SWITCH, switched)
    if event.version < record.latest_version:
        return IndexPlan(IndexAction.STALE, None)
    if event.version == record.live_version:
        return IndexPlan(IndexAction.REAPPLY, None)
    if event.chunks and fingerprint is not None and fingerprint == record.live_fingerprint:
        if record.latest_version == event.version:
            return IndexPlan(IndexAction.UNCHANGED, None)
        return IndexPlan(
            IndexAction.UNCHANGED, dataclasses.replace(record, latest_version=event.version)
        )
    return IndexPlan(IndexAction.SWITCH, switched)


# --- chunks as the index stores them ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """One chunk as the index stores it: its deterministic id, properties and vector."""

    object_id: uuid.UUID
    tenant: str
    doc_id: str
    chunk_id: str
    title: str
    source: str
    tags: tuple[str, ...]
    text: str
    heading_path: tuple[str, ...]
    position: int
    version: int
    doc_hash: str
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
            "tags": list(self.tags),
            "text": self.text,
            "heading_path": list(self.heading_path),
            "position": self.position,
            "version": self.version,
            "doc_hash": self.doc_hash,
            "content_hash": self.content_hash,
            "model": self.model,
            "published_at": self.published_at,
        }


def chunks_to_index(event: ChunksEmbedded, dimensions: int) -> list[IndexedChunk]:
    """Turn one embedded document version into the objects to insert, checking the contract.

    Args:
        event: The document version with its vectors.
        dimensions: The vector size of the query model; any other size could never be searched.

    Raises:
        InvalidEmbeddingsError: The tenant cannot be a Weaviate tenant, a chunk belongs to
            another document, a chunk id repeats, or a vector has the wrong size.
    """
    if not is_tenant_name(event.tenant):
        raise InvalidEmbeddingsError(
            f"tenant {event.tenant[:80]!r} is not a valid tenant name (letters, digits, '_', '-')"
        )
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
            object_id=chunk_object_id(event.tenant, event.doc_id, event.version, chunk.chunk_id),
            tenant=event.tenant,
            doc_id=event.doc_id,
            chunk_id=chunk.chunk_id,
            title=event.title,
            source=event.source,
            tags=tuple(event.tags),
            text=chunk.text,
            heading_path=tuple(chunk.heading_path),
            position=chunk.position,
            version=event.version,
            doc_hash=event.doc_hash or "",
            content_hash=chunk.content_hash,
            model=event.model,
            published_at=published_at,
            vector=tuple(chunk.vector),
        )
        for chunk in event.chunks
    ]


@dataclass(frozen=True, slots=True)
class PendingVersion:
    """A valid document version of a batch, waiting to be applied.

    Args:
        event: The version as the embedder published it.
        chunks: Its objects, as ``chunks_to_index`` built them.
        correlation_id: The record's correlation id, for its status and logs.
    """

    event: ChunksEmbedded
    chunks: list[IndexedChunk]
    correlation_id: str | None = None

    @property
    def document(self) -> tuple[str, str]:
        """The tenant and document id the version belongs to."""
        return self.event.tenant, self.event.doc_id


def version_rounds(versions: Sequence[PendingVersion]) -> list[list[PendingVersion]]:
    """Split a batch into rounds in which each document appears at most once, in arrival order.

    A round is planned against the records as the previous round left them, so a document's
    versions in one batch are applied one after another as if they had come in separate
    batches; within a round the documents are independent, and each write step serves them all.

    Args:
        versions: The batch's valid versions, in the order they were consumed.
    """
    rounds: list[list[PendingVersion]] = []
    seen: Counter[tuple[str, str]] = Counter()
    for version in versions:
        position = seen[version.document]
        seen[version.document] += 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(version)
    return rounds


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

    An unchanged version reports the same: its chunk count is the live version's (equal
    fingerprints mean equal chunk lists), and readers see exactly its content.

    Args:
        event: The document version the index now answers with.
    """
    return DocumentStatus(
        doc_id=event.doc_id,
        tenant=event.tenant,
        stage="indexed" if event.chunks else "deleted",
        version=event.version,
        chunk_count=len(event.chunks),
        doc_hash=event.doc_hash,
        published_at=event.published_at,
    )


# --- search --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One candidate returned by the index for a query, before version filtering and ranking."""

    chunk_id: str
    doc_id: str
    title: str
    text: str
    position: int
    heading_path: tuple[str, ...]
    score: float
    version: int
    source: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """The metadata conditions of one search, normalised; every given condition must hold.

    There is deliberately no tenant here: the index scopes every search to the tenant it is
    given, so no filter a client sends can widen (or replace) that scope.

    Args:
        sources: The chunk's source must be one of these (none: any source).
        tags: The chunk must carry at least one of these tags (none: any tags).
        published_after: The document was published at or after this moment (UTC).
        published_before: The document was published at or before this moment (UTC).
    """

    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    published_after: datetime | None = None
    published_before: datetime | None = None

    @property
    def is_empty(self) -> bool:
        """Whether the filter lets every chunk through."""
        return not (self.sources or self.tags or self.published_after or self.published_before)

    def describe(self) -> dict[str, Any]:
        """Return the conditions that are set, for logs."""
        described: dict[str, Any] = {}
        if self.sources:
            described["sources"] = list(self.sources)
        if self.tags:
            described["tags"] = list(self.tags)
        if self.published_after:
            described["published_after"] = self.published_after.isoformat()
        if self.published_before:
            described["published_before"] = self.published_before.isoformat()
        return described


def metadata_filter(filters: QueryFilters | None) -> MetadataFilter:
    """Normalise a query's filters: values deduplicated and sorted, dates in UTC.

    Empty strings are kept as values: a document published without a source has source ``""``,
    and asking for it is legitimate.

    Args:
        filters: The filters as the query carries them (None: no filter).
    """
    if filters is None:
        return MetadataFilter()
    return MetadataFilter(
        sources=tuple(sorted(set(filters.sources))),
        tags=tuple(sorted(set(filters.tags))),
        published_after=as_utc(filters.published_after) if filters.published_after else None,
        published_before=as_utc(filters.published_before) if filters.published_before else None,
    )


def resolve_option(requested: float | None, default: float) -> float:
    """Return the query's value for a search option, or the service's default when it set none.

    Args:
        requested: The value the query carries (None: not set).
        default: The retriever's setting.
    """
    return default if requested is None else requested


@dataclass(frozen=True, slots=True)
class LiveHits:
    """The hits of the documents' live versions, and what filtering them says about the round.

    Args:
        hits: The hits whose version is their document's live version, in the index's order.
        hidden: How many hits were dropped (another version, or a document with no record yet).
        unsettled: Documents (with chunks live) that also had candidates of an OLDER version than
            the live one. Either the old version's retirement is still running, or the switch
            happened after the search had started, when the live version's chunks may not all
            have been there to be found. A second round settles it: every chunk of the live
            version was written before the record named it, so before the lookup, so before
            the next search.
    """

    hits: list[SearchHit]
    hidden: int
    unsettled: frozenset[str]


def keep_live_versions(hits: Iterable[SearchHit], live: Mapping[str, LiveVersion]) -> LiveHits:
    """Keep only the hits of each document's live version, so no reader sees two versions mixed.

    A document without a record has no live version yet (its first version is being written and
    not switched to), so all of its hits are hidden; so are the hits of a version newer than the
    live one (written, not yet switched to).

    Args:
        hits: The index's candidates.
        live: The live versions of the candidates' documents, by doc_id, read after the search.
    """
    kept: list[SearchHit] = []
    hidden = 0
    unsettled: set[str] = set()
    for hit in hits:
        current = live.get(hit.doc_id)
        if current is not None and hit.version == current.version:
            kept.append(hit)
            continue
        hidden += 1
        # A deletion has nothing to find in another round: hiding the old chunks is the answer.
        if current is not None and hit.version < current.version and current.chunk_count > 0:
            unsettled.add(hit.doc_id)
    return LiveHits(kept, hidden, frozenset(unsettled))


def next_search_limit(
    live: LiveHits, *, fetched: int, limit: int, selected: int, top_k: int, cap: int
) -> int | None:
    """Return the candidate limit for one more search round, or None when this round stands.

    Another round is run when filtering left the context short of ``top_k`` although the index
    had more candidates to give (twice as many are asked for, up to ``cap``), or when a document
    is unsettled (the same limit again: its live version's chunks are all there by now).

    Args:
        live: The filtered hits of this round.
        fetched: How many candidates the index returned.
        limit: How many it was asked for.
        selected: How many chunks made it into the context.
        top_k: How many the query wants.
        cap: The most candidates worth fetching for one query.
    """
    if selected < top_k and live.hidden and fetched >= limit and limit < cap:
        return min(limit * 2, cap)
    if live.unsettled:
        return limit
    return None


def candidate_limit(top_k: int, overfetch: int, cap: int) -> int:
    """Return how many candidates to ask the index for, so dedup can still fill ``top_k``.

    Args:
        top_k: How many chunks the query wants.
        overfetch: The multiplier over ``top_k``.
        cap: The most candidates worth fetching for one query.
    """
    return max(top_k, min(top_k * overfetch, cap))


def select_chunks(
    hits: Iterable[SearchHit], *, top_k: int, max_per_doc: int, min_score: float = 0.0
) -> list[RetrievedChunk]:
    """Rank candidates by score and keep the best ``top_k``, at most ``max_per_doc`` per document.

    Candidates scoring below ``min_score`` are dropped first, so a weak chunk never fills a place
    a document's cap freed. Ties keep the index's order (the sort is stable), and a chunk
    returned twice counts once.

    Args:
        hits: The index's candidates, in any order.
        top_k: How many chunks to keep.
        max_per_doc: How many chunks of one document may appear.
        min_score: The lowest hybrid score kept (Weaviate's relative fusion score, 0..1).
    """
    per_doc: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    selected: list[RetrievedChunk] = []
    for hit in sorted(hits, key=lambda candidate: candidate.score, reverse=True):
        if len(selected) == top_k or hit.score < min_score:
            # Sorted by score: once one is below the cut, all the rest are too.
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
                source=hit.source,
                tags=list(hit.tags),
            )
        )
    return selected


def build_context(
    query: QueryRequested,
    chunks: Sequence[RetrievedChunk],
    timings: Mapping[str, float],
    query_vector: Sequence[float] | None = None,
) -> ContextRetrieved:
    """Return the event carrying ``query`` and its ranked chunks (possibly none) to the generator.

    Args:
        query: The query as requested.
        chunks: The ranked, deduplicated chunks.
        timings: Milliseconds per step, for the answer's audit trail.
        query_vector: The query's embedding, for the generator's semantic answer cache.
    """
    return ContextRetrieved(
        query=query,
        chunks=list(chunks),
        timings={name: round(value, 3) for name, value in timings.items()},
        query_vector=None if query_vector is None else [float(v) for v in query_vector],
    )
