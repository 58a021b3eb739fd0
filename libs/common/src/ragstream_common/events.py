"""Every message that crosses a Kafka topic, defined once.

Each event carries ``schema_version`` so that a consumer can refuse (dead-letter) a shape it does
not understand instead of misreading it. Additive, optional fields keep the version; anything that
changes the meaning of an existing field bumps it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCHEMA_VERSION",
    "AnswerCompleted",
    "AnswerDelta",
    "Chunk",
    "ChunksEmbedded",
    "Citation",
    "ContextRetrieved",
    "DeadLetter",
    "DocumentChunked",
    "DocumentDeleted",
    "DocumentEvent",
    "DocumentStage",
    "DocumentStatus",
    "DocumentUpserted",
    "EmbeddedChunk",
    "FeedbackGiven",
    "QueryFilters",
    "QueryRequested",
    "RetrievedChunk",
    "Usage",
    "utc_now",
]

SCHEMA_VERSION: Literal[1] = 1
DEFAULT_TENANT = "default"


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(default_factory=_new_id)
    occurred_at: datetime = Field(default_factory=utc_now)


# --- documents topic -------------------------------------------------------------------------


class DocumentUpserted(Event):
    """A document was published or replaced; the ingestor turns it into chunks."""

    kind: Literal["upsert"] = "upsert"
    doc_id: str = Field(min_length=1, max_length=256)
    tenant: str = DEFAULT_TENANT
    title: str = ""
    # Text goes in ``content``; bytes (a PDF, a file of unknown encoding) in ``content_base64``.
    content: str = ""
    content_base64: str | None = None
    # The type decides the parser; when it is missing or generic, the file name's extension does.
    content_type: str = "text/plain"
    filename: str | None = None
    source: str = ""
    tags: list[str] = Field(default_factory=list)
    # When the producer published it: the start of the freshness clock.
    published_at: datetime = Field(default_factory=utc_now)


class DocumentDeleted(Event):
    """A document was withdrawn; every chunk of it must leave the index."""

    kind: Literal["delete"] = "delete"
    doc_id: str = Field(min_length=1, max_length=256)
    tenant: str = DEFAULT_TENANT
    published_at: datetime = Field(default_factory=utc_now)


DocumentEvent = Annotated[DocumentUpserted | DocumentDeleted, Field(discriminator="kind")]


# --- chunks and embeddings topics ------------------------------------------------------------


class Chunk(BaseModel):
    """One retrievable passage of one document version."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    doc_id: str
    position: int = Field(ge=0)
    text: str
    heading_path: list[str] = Field(default_factory=list)
    content_hash: str
    # Word pieces of the model's tokenizer for the text the embedder reads (title, headings, text).
    token_count: int | None = None


class DocumentChunked(Event):
    """The chunks of one document version, published by the ingestor."""

    doc_id: str
    tenant: str = DEFAULT_TENANT
    version: int = Field(ge=1)
    title: str = ""
    source: str = ""
    tags: list[str] = Field(default_factory=list)
    doc_hash: str
    chunks: list[Chunk]
    published_at: datetime


class EmbeddedChunk(Chunk):
    """A chunk with its vector."""

    vector: list[float]


class ChunksEmbedded(Event):
    """The vectors of one document version's chunks, published by the embedder."""

    doc_id: str
    tenant: str = DEFAULT_TENANT
    version: int = Field(ge=1)
    title: str = ""
    source: str = ""
    tags: list[str] = Field(default_factory=list)
    # The document's content hash: a version whose hash equals the indexed one changes nothing.
    doc_hash: str | None = None
    model: str
    chunks: list[EmbeddedChunk]
    published_at: datetime


# --- document-status topic -------------------------------------------------------------------

DocumentStage = Literal["received", "chunked", "embedded", "indexed", "deleted", "failed"]


class DocumentStatus(Event):
    """Where one document stands; the compacted status topic keeps the latest per document."""

    doc_id: str
    tenant: str = DEFAULT_TENANT
    stage: DocumentStage
    version: int | None = None
    chunk_count: int | None = None
    reason: str | None = None
    doc_hash: str | None = None
    published_at: datetime | None = None


# --- queries, contexts, answers topics --------------------------------------------------------


class QueryFilters(BaseModel):
    """Metadata a chunk must match to be retrieved; every given condition must hold."""

    model_config = ConfigDict(frozen=True)

    # Any of these sources.
    sources: list[str] = Field(default_factory=list)
    # Any of these tags.
    tags: list[str] = Field(default_factory=list)
    published_after: datetime | None = None
    published_before: datetime | None = None


class QueryRequested(Event):
    """A question asked through the gateway; ``reply_to`` names the replica waiting for it."""

    query_id: str = Field(default_factory=_new_id)
    tenant: str = DEFAULT_TENANT
    text: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=50)
    reply_to: str
    requested_at: datetime = Field(default_factory=utc_now)
    # Hybrid balance: 1 is pure vector search, 0 pure BM25; None takes the retriever's default.
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    filters: QueryFilters | None = None
    # Chunks scoring below this are dropped; None takes the retriever's default.
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    # Answer as deltas on the answers topic (then an AnswerCompleted), for Server-Sent Events.
    stream: bool = False
    # False: answer afresh, neither reading nor filling the answer caches or the model call cache.
    cache: bool = True


class RetrievedChunk(BaseModel):
    """A chunk found for a query, with its relevance score."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    doc_id: str
    title: str
    text: str
    position: int
    heading_path: list[str] = Field(default_factory=list)
    score: float
    source: str = ""
    tags: list[str] = Field(default_factory=list)


class ContextRetrieved(Event):
    """A query together with the ranked chunks the retriever found for it."""

    query: QueryRequested
    chunks: list[RetrievedChunk]
    timings: dict[str, float] = Field(default_factory=dict)
    query_vector: list[float] | None = None


class Citation(BaseModel):
    """A source the answer relies on; ``n`` is the [n] marker in the answer text."""

    model_config = ConfigDict(frozen=True)

    n: int
    doc_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float
    # Whether the answer's sentences citing [n] are supported by passage n's text.
    supported: bool | None = None


class Usage(BaseModel):
    """Tokens and cost of the model calls behind one answer (LiteLLM's accounting)."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class AnswerCompleted(Event):
    """The final answer to a query, routed back to the gateway replica named in ``reply_to``."""

    query_id: str
    tenant: str = DEFAULT_TENANT
    reply_to: str
    answer: str
    citations: list[Citation]
    model: str
    cached: bool = False
    timings: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    # Share of the answer's sentences supported by the retrieved text, in [0, 1].
    groundedness: float | None = Field(default=None, ge=0.0, le=1.0)
    usage: Usage | None = None
    prompt_version: str | None = None
    # The deployments tried, in order (fallbacks and cascade escalations), the answering one last.
    attempts: list[str] = Field(default_factory=list)


class AnswerDelta(Event):
    """A piece of a streamed answer; ``seq`` orders the pieces of one query from 0."""

    query_id: str
    tenant: str = DEFAULT_TENANT
    reply_to: str
    seq: int = Field(ge=0)
    delta: str


# --- feedback -----------------------------------------------------------------------------------


class FeedbackGiven(Event):
    """A user's rating of one answer, with the model and prompt version that wrote it."""

    query_id: str
    tenant: str = DEFAULT_TENANT
    # 1 (useless) to 5 (exactly right); a thumbs-down/up client sends 1 or 5.
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
    model: str
    prompt_version: str | None = None
    given_at: datetime = Field(default_factory=utc_now)


# --- <topic>.dlq ------------------------------------------------------------------------------


class DeadLetter(Event):
    """A message a consumer could not process, with the reason and the original bytes."""

    service: str
    original_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    error_type: str
    error: str
    original_value_b64: str
    original_headers: dict[str, str] = Field(default_factory=dict)
