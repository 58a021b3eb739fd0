"""The gateway's logic as plain code: API models, the status view, and the pending-reply registry.

Nothing here touches Kafka or HTTP; ``app.py`` and ``handlers.py`` call into it.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragstream_common.events import AnswerCompleted, DocumentStage, DocumentStatus

__all__ = [
    "DEFAULT_TENANT",
    "DOC_ID_PATTERN",
    "TENANT_PATTERN",
    "CitationOut",
    "DocumentAccepted",
    "DocumentIn",
    "DocumentStatusView",
    "ErrorBody",
    "PendingReplies",
    "QueryAnswer",
    "QueryIn",
    "StatusBook",
    "accept_correlation_id",
    "answer_to_response",
    "content_size",
    "status_url",
]

# Tenants become Weaviate tenant names downstream, which allow letters, digits, '_' and '-' only.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# A document id travels in a URL path segment (the status URL), so no '/', '?', '#' or spaces.
DOC_ID_PATTERN = r"^[^\s/?#]{1,256}$"
DEFAULT_TENANT = "default"
MAX_QUERY_CHARS = 2000

# A correlation id from a client ends up in every log line, so only short, plain ids are trusted.
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# --- documents ----------------------------------------------------------------------------------


class DocumentIn(BaseModel):
    """A document to add or replace (``POST /v1/documents``)."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str | None = Field(
        default=None,
        pattern=DOC_ID_PATTERN,
        description="Your id for the document; a fresh one is generated when absent.",
    )
    title: str = Field(default="", max_length=1_000)
    content: str = Field(description="The document's text (or Markdown, HTML, JSON).")
    content_type: str = Field(default="text/plain", min_length=1, max_length=200)
    source: str = Field(default="", max_length=2_000, description="Where the document came from.")
    tags: list[str] = Field(default_factory=list, max_length=100)
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, content: str) -> str:
        if not content.strip():
            raise ValueError("content must not be empty")
        return content


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
    version: int | None = None
    chunk_count: int | None = None
    reason: str | None = Field(default=None, description="Why the document failed, if it did.")
    updated_at: datetime


def content_size(content: str) -> int:
    """Return the size of ``content`` in UTF-8 bytes, the unit of ``max_document_bytes``."""
    return len(content.encode("utf-8", errors="surrogatepass"))


def status_url(doc_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Return the URL path where a document's status can be read.

    Args:
        doc_id: The document id.
        tenant: Its tenant; left out of the URL for the default tenant.
    """
    path = f"/v1/documents/{urllib.parse.quote(doc_id, safe='')}"
    if tenant != DEFAULT_TENANT:
        path += f"?tenant={urllib.parse.quote(tenant, safe='')}"
    return path


@dataclass
class _StatusEntry:
    view: DocumentStatusView
    # The highest version any event has named for this document. Kept apart from the view
    # because a version-less event (the gateway's "received") must not lower it.
    highest_version: int | None


class StatusBook:
    """The latest status of every document, folded from the ``document-status`` topic.

    Events arrive in order per document (they are keyed by ``doc_id``) but from several
    producers, so a slow producer can still report on a version that has since been replaced:
    an event naming a version older than the newest one seen is ignored. Events without a
    version (the gateway's own "received") always apply, since they announce a newer upload.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _StatusEntry] = {}

    def apply(self, event: DocumentStatus) -> bool:
        """Fold ``event`` into the book; return whether it changed the document's status.

        Args:
            event: A status event from any stage of the pipeline.
        """
        key = (event.tenant, event.doc_id)
        current = self._entries.get(key)
        highest = current.highest_version if current else None
        if event.version is not None and highest is not None and event.version < highest:
            return False
        if event.version is not None:
            highest = event.version if highest is None else max(highest, event.version)
        self._entries[key] = _StatusEntry(
            view=DocumentStatusView(
                doc_id=event.doc_id,
                tenant=event.tenant,
                stage=event.stage,
                indexed=event.stage == "indexed",
                version=event.version,
                chunk_count=event.chunk_count,
                reason=event.reason,
                updated_at=event.occurred_at,
            ),
            highest_version=highest,
        )
        return True

    def get(self, tenant: str, doc_id: str) -> DocumentStatusView | None:
        """Return the document's latest status, or None if no event named it."""
        entry = self._entries.get((tenant, doc_id))
        return entry.view if entry else None

    def __len__(self) -> int:
        return len(self._entries)


# --- queries ------------------------------------------------------------------------------------


class QueryIn(BaseModel):
    """A question to answer from the indexed documents (``POST /v1/query``)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=50, description="How many passages to retrieve.")
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)

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
    )


def accept_correlation_id(value: str | None) -> str | None:
    """Return a client-supplied correlation id if it is safe to log and forward, else None.

    Args:
        value: The ``X-Request-ID`` or ``X-Correlation-ID`` header, if sent.
    """
    if value and _CORRELATION_ID.match(value):
        return value
    return None


class PendingReplies:
    """The queries this replica waits on, each with the future its answer resolves.

    Every replica sees every answer, so ``resolve`` must be cheap and must ignore answers it does
    not wait for (another replica's, or one that arrives after its request timed out).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[AnswerCompleted]] = {}

    def expect(self, query_id: str) -> asyncio.Future[AnswerCompleted]:
        """Register ``query_id`` and return the future its answer will resolve.

        Register before publishing the query, so that even an instant answer finds its future.

        Args:
            query_id: The id of the query about to be published.
        """
        if query_id in self._waiting:
            raise ValueError(f"query {query_id} is already pending")
        future: asyncio.Future[AnswerCompleted] = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = future
        return future

    def resolve(self, answer: AnswerCompleted) -> bool:
        """Hand ``answer`` to the request waiting for it; return False if none is.

        Args:
            answer: An answer from the answers topic.
        """
        future = self._waiting.pop(answer.query_id, None)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    def forget(self, query_id: str) -> None:
        """Stop waiting for ``query_id`` (timed out, or the client went away)."""
        future = self._waiting.pop(query_id, None)
        if future is not None and not future.done():
            future.cancel()

    def cancel_all(self) -> None:
        """Cancel every pending request, at shutdown."""
        for query_id in list(self._waiting):
            self.forget(query_id)

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, query_id: object) -> bool:
        return query_id in self._waiting
