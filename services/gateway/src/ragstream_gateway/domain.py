"""The gateway's logic as plain code: API models, the status view, and the pending-reply registry.

Nothing here touches Kafka or HTTP; ``app.py`` and ``handlers.py`` call into it.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import re
import urllib.parse
from datetime import datetime
from typing import Annotated, Literal, NamedTuple, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    DocumentStage,
    DocumentStatus,
    QueryFilters,
)
from ragstream_common.identifiers import DOC_ID_PATTERN, TENANT_PATTERN

__all__ = [
    "DEFAULT_TENANT",
    "DOC_ID_PATTERN",
    "TENANT_PATTERN",
    "CitationOut",
    "DeltaOrder",
    "DocumentAccepted",
    "DocumentIn",
    "DocumentStatusView",
    "ErrorBody",
    "FiltersIn",
    "PendingReplies",
    "QueryAnswer",
    "QueryIn",
    "StatusBook",
    "StreamItem",
    "UsageOut",
    "accept_correlation_id",
    "answer_to_response",
    "content_size",
    "decoded_base64_size",
    "sse_comment",
    "sse_event",
    "status_url",
    "upload_version",
]

# Document ids may hold '/', so the status route takes the rest of the URL path as the id.
DEFAULT_TENANT = "default"
MAX_QUERY_CHARS = 2000

# A correlation id from a client ends up in every log line, so only short, plain ids are trusted.
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# --- documents ----------------------------------------------------------------------------------


class DocumentIn(BaseModel):
    """A document to add or replace (``POST /v1/documents``): text in ``content``, or bytes."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str | None = Field(
        default=None,
        pattern=DOC_ID_PATTERN,
        description="Your id for the document; a fresh one is generated when absent.",
    )
    title: str = Field(default="", max_length=1_000)
    content: str = Field(default="", description="The document's text (or Markdown, HTML, JSON).")
    content_base64: str | None = Field(
        default=None,
        description="The document's bytes (a PDF, text in another encoding), base64-encoded; "
        "line breaks are allowed. Send this or content, not both.",
    )
    content_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Decides the parser. Default: text/plain for content, and for bytes "
        "application/octet-stream, which lets the filename's extension decide.",
    )
    filename: str | None = Field(
        default=None, max_length=1_000, description="The original file name, if any."
    )
    source: str = Field(default="", max_length=2_000, description="Where the document came from.")
    tags: list[str] = Field(default_factory=list, max_length=100)
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)

    @field_validator("content_base64")
    @classmethod
    def _strict_base64(cls, encoded: str | None) -> str | None:
        if encoded is None:
            return None
        # Tools such as base64(1) wrap their output at 76 columns; the wrapping is not data.
        compact = "".join(encoded.split())
        # strict_mode still lets a stray trailing '=' through, so the length is checked too.
        if len(compact) % 4:
            raise ValueError("content_base64 is not valid base64 (length not a multiple of 4)")
        try:
            binascii.a2b_base64(compact, strict_mode=True)
        except binascii.Error as error:
            raise ValueError(f"content_base64 is not valid base64 ({error})") from None
        return compact or None

    @model_validator(mode="after")
    def _exactly_one_content(self) -> Self:
        has_text = bool(self.content.strip())
        has_bytes = bool(self.content_base64)
        if has_text == has_bytes:
            raise ValueError(
                "send exactly one of content (non-blank text) and content_base64 (bytes); "
                + ("both were given" if has_text else "neither was given")
            )
        return self

    @property
    def resolved_content_type(self) -> str:
        """The content type to publish: the given one, else the default for text or bytes."""
        if self.content_type is not None:
            return self.content_type
        return "application/octet-stream" if self.content_base64 else "text/plain"

    def content_bytes(self) -> int:
        """Return the size of the document in bytes: UTF-8 text, or the decoded base64."""
        if self.content_base64:
            return decoded_base64_size(self.content_base64)
        return content_size(self.content)


class DocumentAccepted(BaseModel):
    """The answer to a document upload or deletion: accepted, and where to follow it."""

    doc_id: str
    status: Literal["received", "delete_requested"]
    status_url: str


class DocumentStatusView(BaseModel):
    """Where one document stands in the pipeline (``GET /v1/documents/{doc_id}``)."""

    doc_id: str
    tenant: str
    stage: DocumentStage
    indexed: bool = Field(description="True once the document's chunks are searchable.")
    version: int | None = Field(
        default=None, description="The document version the stage is about, once known."
    )
    chunk_count: int | None = None
    reason: str | None = Field(default=None, description="Why the document failed, if it did.")
    doc_hash: str | None = Field(
        default=None, description="The content hash of this version, once the ingestor has it."
    )
    timestamps: dict[DocumentStage, datetime] = Field(
        default_factory=dict,
        description="When this version reached each stage so far (the events' occurred_at).",
    )
    updated_at: datetime


def content_size(content: str) -> int:
    """Return the size of ``content`` in UTF-8 bytes, the unit of ``max_document_bytes``."""
    return len(content.encode("utf-8", errors="surrogatepass"))


def decoded_base64_size(encoded: str) -> int:
    """Return how many bytes the valid, unwrapped base64 ``encoded`` decodes to.

    Args:
        encoded: Base64 without whitespace, as ``DocumentIn`` keeps it.
    """
    return len(encoded) // 4 * 3 - encoded[-2:].count("=")


def upload_version(offset: int) -> int:
    """Return the version the ingestor gives the upsert stored at ``offset`` of ``documents``.

    The ingestor numbers versions by offset (its ``document_version``); knowing it at upload
    time lets the "received" status name the version it announces.

    Args:
        offset: The upsert's offset, from the publish acknowledgement.
    """
    return offset + 1


def status_url(doc_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Return the URL path where a document's status can be read.

    Args:
        doc_id: The document id.
        tenant: Its tenant; left out of the URL for the default tenant.
    """
    # '/' stays as it is: the route takes the rest of the path, and paths read better unescaped.
    path = f"/v1/documents/{urllib.parse.quote(doc_id, safe='/')}"
    if tenant != DEFAULT_TENANT:
        path += f"?tenant={urllib.parse.quote(tenant, safe='')}"
    return path


# Within one version, a stage never goes back: a redelivered "chunked" after "indexed" is old news.
_STAGE_RANK: dict[str, int] = {
    "received": 0,
    "chunked": 1,
    "embedded": 2,
    "indexed": 3,
    "deleted": 3,
    "failed": 3,
}


class _StatusEntry(NamedTuple):
    """The folded status of one document (the book stores it as a plain tuple, see there)."""

    stage: DocumentStage
    version: int | None
    chunk_count: int | None
    reason: str | None
    doc_hash: str | None
    # The newest occurred_at of any applied event: what a version-less "received" must beat.
    updated_at: datetime
    # Each stage's time, as pairs: a dict would keep the tuple tracked (see StatusBook).
    timestamps: tuple[tuple[DocumentStage, datetime], ...]
    # The highest version any event has named for this document. Kept apart from ``version``
    # because a version-less "received" (a re-upload whose version is not known) clears that.
    highest_version: int | None = None

    @property
    def awaiting_version(self) -> bool:
        """Whether the latest event named no version: a re-upload not yet numbered."""
        return self.version is None

    def stamped(self, stage: DocumentStage) -> datetime | None:
        """When ``stage`` happened, if an event said so."""
        return dict(self.timestamps).get(stage)

    def with_stamp(
        self, stage: DocumentStage, at: datetime
    ) -> tuple[tuple[DocumentStage, datetime], ...]:
        """The timestamps with ``stage`` at ``at`` (replacing an earlier time of it)."""
        return tuple({**dict(self.timestamps), stage: at}.items())


class StatusBook:
    """The latest status of every document, folded from the ``document-status`` topic.

    Events arrive in order per document (they are keyed by ``doc_id``) but from several producers,
    so a slow producer can still report on a version that has since been replaced. The rules:

    - an event naming a version older than the newest one seen is ignored;
    - an event naming a newer version starts that version afresh (stage, timestamps, counts);
    - within one version a stage never goes back (received < chunked < embedded < indexed, and
      failed or deleted end it), though every stage's timestamp is recorded;
    - an event without a version (a "received" whose upload offset was unknown) applies when it
      is newer, by occurred_at, than everything applied so far: a re-upload after "indexed"
      shows "received" again, and events about the replaced version no longer displace it.
    """

    def __init__(self) -> None:
        # Plain tuples of plain values, not _StatusEntry: the garbage collector stops tracking
        # an exact tuple (not a subclass, and holding no dict or list) once it has seen it hold
        # only untracked values, and then the dict too. So a full collection does not walk
        # every document the gateway knows, and the book holds every document ever ingested.
        self._entries: dict[tuple[str, str], tuple[object, ...]] = {}

    def _entry(self, key: tuple[str, str]) -> _StatusEntry | None:
        stored = self._entries.get(key)
        return None if stored is None else _StatusEntry._make(stored)

    def _store(self, key: tuple[str, str], entry: _StatusEntry) -> None:
        self._entries[key] = tuple(entry)

    def apply(self, event: DocumentStatus) -> bool:
        """Fold ``event`` into the book; return False if it was ignored as stale.

        Args:
            event: A status event from any stage of the pipeline.
        """
        key = (event.tenant, event.doc_id)
        entry = self._entry(key)
        if entry is None:
            self._store(key, _fresh_entry(event))
            return True
        if event.version is None:
            if event.occurred_at < entry.updated_at:
                return False
            self._store(key, _fresh_entry(event, highest_version=entry.highest_version))
            return True
        highest = entry.highest_version
        if highest is not None and event.version < highest:
            return False
        if highest is None or event.version > highest:
            # A version-less "received" before the first event naming a new version announced
            # that very upload, so its time stays as the version's received time.
            received_at = entry.stamped("received") if entry.awaiting_version else None
            self._store(key, _fresh_entry(event, received_at=received_at))
            return True
        if entry.awaiting_version:
            # Same version as the newest seen, after a re-upload was announced: an event about
            # the replaced version, unless it happened after the announcement.
            if event.occurred_at < entry.updated_at:
                return False
            received_at = entry.stamped("received")
            self._store(key, _fresh_entry(event, received_at=received_at))
            return True
        if _STAGE_RANK[event.stage] < _STAGE_RANK[entry.stage]:
            # Late news of an earlier stage (the gateway's "received" racing the ingestor's
            # "chunked", or a redelivery): its time is still worth keeping, its stage is not.
            if entry.stamped(event.stage) is None:
                self._store(
                    key, entry._replace(timestamps=entry.with_stamp(event.stage, event.occurred_at))
                )
            return False
        self._store(
            key,
            entry._replace(
                timestamps=entry.with_stamp(event.stage, event.occurred_at),
                stage=event.stage,
                reason=event.reason,
                updated_at=max(entry.updated_at, event.occurred_at),
                chunk_count=entry.chunk_count if event.chunk_count is None else event.chunk_count,
                doc_hash=entry.doc_hash if event.doc_hash is None else event.doc_hash,
            ),
        )
        return True

    def get(self, tenant: str, doc_id: str) -> DocumentStatusView | None:
        """Return the document's latest status, or None if no event named it."""
        entry = self._entry((tenant, doc_id))
        if entry is None:
            return None
        return DocumentStatusView(
            doc_id=doc_id,
            tenant=tenant,
            stage=entry.stage,
            indexed=entry.stage == "indexed",
            version=entry.version,
            chunk_count=entry.chunk_count,
            reason=entry.reason,
            doc_hash=entry.doc_hash,
            # In pipeline order, whatever order the stages' events were read in.
            timestamps=dict(sorted(entry.timestamps, key=lambda item: _STAGE_RANK[item[0]])),
            updated_at=entry.updated_at,
        )

    def __len__(self) -> int:
        return len(self._entries)


def _fresh_entry(
    event: DocumentStatus,
    *,
    received_at: datetime | None = None,
    highest_version: int | None = None,
) -> _StatusEntry:
    """Start a document's status (or a new version of it) from ``event``.

    Args:
        event: The first event of the version.
        received_at: When the upload of this version was announced, if before ``event``.
        highest_version: The newest version seen so far, kept when ``event`` names none.
    """
    timestamps: dict[DocumentStage, datetime] = {event.stage: event.occurred_at}
    if received_at is not None:
        timestamps.setdefault("received", received_at)
    return _StatusEntry(
        stage=event.stage,
        version=event.version,
        chunk_count=event.chunk_count,
        reason=event.reason,
        doc_hash=event.doc_hash,
        updated_at=event.occurred_at,
        timestamps=tuple(timestamps.items()),
        highest_version=event.version if event.version is not None else highest_version,
    )


# --- queries ------------------------------------------------------------------------------------


MAX_FILTER_VALUES = 50
FilterValue = Annotated[str, Field(max_length=256)]


class FiltersIn(BaseModel):
    """Metadata a passage must match to be retrieved; every given condition must hold."""

    model_config = ConfigDict(extra="forbid")

    sources: list[FilterValue] = Field(
        default_factory=list,
        max_length=MAX_FILTER_VALUES,
        description="Only passages of documents with one of these sources (none: any).",
    )
    tags: list[FilterValue] = Field(
        default_factory=list,
        max_length=MAX_FILTER_VALUES,
        description="Only passages of documents carrying at least one of these tags (none: any).",
    )
    published_after: AwareDatetime | None = Field(
        default=None, description="Only documents published at or after this time (with zone)."
    )
    published_before: AwareDatetime | None = Field(
        default=None, description="Only documents published at or before this time (with zone)."
    )

    @model_validator(mode="after")
    def _range_not_inverted(self) -> Self:
        after, before = self.published_after, self.published_before
        if after is not None and before is not None and after > before:
            raise ValueError("published_after must not be later than published_before")
        return self

    def to_event(self) -> QueryFilters:
        """Return the filters as the query event carries them."""
        return QueryFilters.model_validate(self.model_dump())


class QueryIn(BaseModel):
    """A question to answer from the indexed documents (``POST /v1/query``)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=50, description="How many passages to retrieve.")
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)
    alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Hybrid balance: 0 keyword (BM25) only, 1 vector only; "
        "none takes the retriever's default (0.5).",
    )
    filters: FiltersIn | None = Field(default=None, description="Metadata filters.")
    min_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Drop passages whose hybrid score (0..1, relative to the query's result "
        "set) is below this; none takes the retriever's default.",
    )
    stream: bool = Field(
        default=False,
        description="Answer as Server-Sent Events: `delta` events as the model writes, then one "
        "`done` event with the body a non-streamed query returns (or an `error` event).",
    )
    cache: bool = Field(
        default=True,
        description="False: answer afresh, neither reading nor filling the answer caches or "
        "the model call cache (for evaluations and benchmarks).",
    )

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query must not be blank")
        return query


class CitationOut(BaseModel):
    """A source of the answer; ``n`` is its ``[n]`` marker in the answer text."""

    n: int
    doc_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float
    supported: bool | None = Field(
        default=None,
        description="Whether the answer's sentences citing [n] are supported by this passage.",
    )


class UsageOut(BaseModel):
    """Tokens and cost of the model calls behind an answer."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class QueryAnswer(BaseModel):
    """The answer to a query, with its sources and where the time went."""

    query_id: str
    answer: str
    citations: list[CitationOut]
    model: str
    cached: bool
    timings: dict[str, float] = Field(
        description="Milliseconds per stage (<stage>_ms), plus gateway_total_ms end to end."
    )
    groundedness: float | None = Field(
        default=None, description="Share of the answer's sentences supported by the passages."
    )
    usage: UsageOut | None = None
    prompt_version: str | None = None
    attempts: list[str] = Field(
        default_factory=list,
        description="The model deployments tried, in order, the answering one last.",
    )


class ErrorBody(BaseModel):
    """Every error response: what went wrong, and the query it concerns if any."""

    detail: str
    query_id: str | None = None


def answer_to_response(answer: AnswerCompleted, gateway_total_ms: float) -> QueryAnswer:
    """Map the generator's answer event to the HTTP response body.

    Args:
        answer: The completed answer.
        gateway_total_ms: Time from the request's arrival to the answer's, in milliseconds.
    """
    return QueryAnswer(
        query_id=answer.query_id,
        answer=answer.answer,
        citations=[CitationOut.model_validate(c.model_dump()) for c in answer.citations],
        model=answer.model,
        cached=answer.cached,
        timings={**answer.timings, "gateway_total_ms": round(gateway_total_ms, 3)},
        groundedness=answer.groundedness,
        usage=UsageOut.model_validate(answer.usage.model_dump()) if answer.usage else None,
        prompt_version=answer.prompt_version,
        attempts=list(answer.attempts),
    )


def accept_correlation_id(value: str | None) -> str | None:
    """Return a client-supplied correlation id if it is safe to log and forward, else None.

    Args:
        value: The ``X-Request-ID`` or ``X-Correlation-ID`` header, if sent.
    """
    if value and _CORRELATION_ID.match(value):
        return value
    return None


# What a streamed query's queue carries: pieces of its answer, then the answer itself.
StreamItem = AnswerDelta | AnswerCompleted


class DeltaOrder:
    """Puts one answer's deltas back in ``seq`` order, holding any that arrive early.

    The generator keys every delta of a query alike, so they share a partition and arrive in
    order; this is the defence for when they do not (a republished message, a future producer).
    A duplicate, or a delta older than one already released, is dropped.
    """

    def __init__(self) -> None:
        self.next_seq = 0
        self._early: dict[int, str] = {}

    def push(self, delta: AnswerDelta) -> list[AnswerDelta]:
        """Take ``delta``; return the deltas now releasable, in order (possibly none).

        Args:
            delta: A piece of the answer.
        """
        if delta.seq < self.next_seq:
            return []
        self._early[delta.seq] = delta.delta
        released: list[AnswerDelta] = []
        while self.next_seq in self._early:
            text = self._early.pop(self.next_seq)
            released.append(delta.model_copy(update={"seq": self.next_seq, "delta": text}))
            self.next_seq += 1
        return released

    def held(self) -> int:
        """How many deltas wait for an earlier one that has not arrived."""
        return len(self._early)


def sse_event(event: str, data: object) -> str:
    """Format one Server-Sent Event: ``event: <event>`` and ``data: <json>``, then a blank line.

    Args:
        event: The event's type (``delta``, ``done``, ``error``).
        data: Its payload, sent as compact JSON on one line.
    """
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def sse_comment(text: str) -> str:
    """Format an SSE comment line, which clients ignore: a heartbeat that keeps proxies open.

    Args:
        text: The comment.
    """
    return f": {text}\n\n"


class PendingReplies:
    """The queries this replica waits on: a future per query, a queue per streamed query.

    Every replica sees every answer, so ``resolve`` must be cheap and must ignore answers it does
    not wait for (another replica's, or one that arrives after its request timed out).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[AnswerCompleted]] = {}
        # Streamed queries: their deltas, then their answer, in arrival order.
        self._streams: dict[str, asyncio.Queue[StreamItem]] = {}

    def expect(self, query_id: str) -> asyncio.Future[AnswerCompleted]:
        """Register ``query_id`` and return the future its answer will resolve.

        Register before publishing the query, so that even an instant answer finds its future.

        Args:
            query_id: The id of the query about to be published.
        """
        if query_id in self:
            raise ValueError(f"query {query_id} is already pending")
        future: asyncio.Future[AnswerCompleted] = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = future
        return future

    def resolve(self, answer: AnswerCompleted) -> bool:
        """Hand ``answer`` to the request waiting for it; return False if none is.

        Args:
            answer: An answer from the answers topic.
        """
        stream = self._streams.pop(answer.query_id, None)
        if stream is not None:
            stream.put_nowait(answer)
            return True
        future = self._waiting.pop(answer.query_id, None)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    def expect_stream(self, query_id: str) -> asyncio.Queue[StreamItem]:
        """Register streamed ``query_id`` and return the queue its deltas, then answer, fill.

        Register before publishing the query, so that even an instant delta finds its queue.

        Args:
            query_id: The id of the query about to be published.
        """
        if query_id in self:
            raise ValueError(f"query {query_id} is already pending")
        queue: asyncio.Queue[StreamItem] = asyncio.Queue()
        self._streams[query_id] = queue
        return queue

    def deliver(self, delta: AnswerDelta) -> bool:
        """Hand ``delta`` to the streamed request it belongs to; return False if none waits.

        Args:
            delta: A piece of an answer from the answers topic.
        """
        stream = self._streams.get(delta.query_id)
        if stream is None:
            return False
        stream.put_nowait(delta)
        return True

    def forget(self, query_id: str) -> None:
        """Stop waiting for ``query_id`` (timed out, or the client went away)."""
        future = self._waiting.pop(query_id, None)
        if future is not None and not future.done():
            future.cancel()
        # Whatever still sits in a forgotten stream's queue goes with it.
        self._streams.pop(query_id, None)

    def cancel_all(self) -> None:
        """Cancel every pending request, at shutdown."""
        for query_id in [*self._waiting, *self._streams]:
            self.forget(query_id)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._streams)

    def __contains__(self, query_id: object) -> bool:
        return query_id in self._waiting or query_id in self._streams
