"""Document events into chunked versions: limits, parsing, chunking, identity, statuses.

Plain functions, no I/O. An upsert is checked against the size limit, parsed by its type (see
``parsing``), cut into token-bounded chunks (see ``chunking``), and each chunk named by its
content, so that an unchanged chunk keeps its id from one version of a document to the next and
publishing the same document twice yields the same ids and the same document hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import TypeAdapter

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import (
    DEFAULT_TENANT,
    Chunk,
    DocumentChunked,
    DocumentDeleted,
    DocumentEvent,
    DocumentStatus,
    DocumentUpserted,
)
from ragstream_ingestor.chunking import (
    ChunkDraft,
    ChunkingPolicy,
    TokenCounter,
    chunk_sections,
    fit_title,
)
from ragstream_ingestor.errors import DocumentRejectedError
from ragstream_ingestor.parsing import ParsedDocument, parse_document, resolve_media_type

__all__ = [
    "DocumentRejectedError",
    "IngestLimits",
    "Ingested",
    "chunk_deletion",
    "chunk_upsert",
    "chunked_status",
    "document_event",
    "document_hash",
    "document_payload",
    "document_version",
    "failed_status",
    "identify_chunks",
    "sha256_hex",
]


@dataclass(frozen=True)
class IngestLimits:
    """What one document may cost; past either limit it is rejected, never half-indexed.

    Args:
        max_document_bytes: The largest document, in bytes before parsing (UTF-8 for text).
        max_chunks: The most chunks one version may have. A version travels as one Kafka
            message of at most 8 MiB, and each chunk with its vector costs about 9 KB
            downstream.
    """

    max_document_bytes: int
    max_chunks: int


@dataclass(frozen=True)
class Ingested:
    """One upsert, chunked.

    Args:
        chunked: The version to publish on ``chunks``.
        media_type: The type the document was parsed as.
        replaced: Invalid byte sequences decoding replaced with U+FFFD (worth a log line).
    """

    chunked: DocumentChunked
    media_type: str
    replaced: int


def sha256_hex(text: str) -> str:
    """Return the SHA-256 of ``text`` encoded as UTF-8, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


# --- reading the documents topic --------------------------------------------------------------

_DOCUMENT_EVENT: TypeAdapter[DocumentUpserted | DocumentDeleted] = TypeAdapter(DocumentEvent)


def document_event(
    key: bytes | None, value: bytes | None, timestamp_ms: int
) -> DocumentUpserted | DocumentDeleted:
    """Return the event a ``documents`` record carries.

    A record with a null value is a Kafka tombstone: once compaction runs, it is all that is
    left of the document on the topic, and it means the document is gone. It carries no tenant,
    so it deletes the document of the default tenant named by the record's key.

    Args:
        key: The record's key, the document id.
        value: The record's value: an event as JSON, or None for a tombstone.
        timestamp_ms: The record's timestamp, taken as the time of a tombstone's delete.

    Raises:
        pydantic.ValidationError: The value is not a valid document event (malformed JSON, an
            unknown kind, a missing field).
        DocumentRejectedError: A tombstone without a key, which names no document.
    """
    if value is not None:
        return _DOCUMENT_EVENT.validate_json(value)
    if not key:
        raise DocumentRejectedError("a tombstone without a key names no document to delete")
    return DocumentDeleted(
        doc_id=key.decode(),
        tenant=DEFAULT_TENANT,
        published_at=datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC),
    )


def document_version(offset: int) -> int:
    """Return the version of the document carried by the ``documents`` record at ``offset``.

    Every version of a document is keyed by its id and so lands on one partition, where offsets
    only grow: the offset orders versions without any state, and a redelivered record gets the
    same version again.

    Args:
        offset: The Kafka offset of the record.
    """
    return offset + 1


def document_payload(event: DocumentUpserted, limits: IngestLimits) -> str | bytes:
    """Return the document's content, as text or bytes, within the size limit.

    Args:
        event: The upsert.
        limits: The size limit.

    Raises:
        DocumentRejectedError: Content is in both fields, the base64 is invalid, or the
            document is larger than ``limits.max_document_bytes``.
    """
    if event.content_base64 is not None:
        if event.content:
            raise DocumentRejectedError("the upsert carries both content and content_base64")
        try:
            # Line breaks are common in base64 (MIME wraps it at 76 characters); nothing else is.
            compact = "".join(event.content_base64.split())
            payload: str | bytes = base64.b64decode(compact, validate=True)
        except binascii.Error as error:
            raise DocumentRejectedError(f"content_base64 is not valid base64: {error}") from error
        size = len(payload)
    else:
        payload = event.content
        size = len(payload.encode(errors="surrogatepass"))
    if size > limits.max_document_bytes:
        raise DocumentRejectedError(
            f"document is {size} bytes, over the limit of {limits.max_document_bytes}"
        )
    return payload


# --- upserts and deletes ----------------------------------------------------------------------


def chunk_upsert(
    event: DocumentUpserted,
    version: int,
    counter: TokenCounter,
    policy: ChunkingPolicy,
    limits: IngestLimits,
) -> Ingested:
    """Return the chunks of one version of a document.

    Args:
        event: The upsert, as published.
        version: See ``document_version``.
        counter: The embedding model's token counter.
        policy: The token budget and overlap.
        limits: The size and chunk-count limits.

    Raises:
        DocumentRejectedError: The document is too large, of an unsupported type, cannot be
            parsed, holds no text, or needs too many chunks.
    """
    payload = document_payload(event, limits)
    media_type = resolve_media_type(event.content_type, event.filename)
    parsed = parse_document(payload, media_type)
    # The event's title wins; a title found in the document stands in for a missing one.
    title = " ".join(event.title.split()) or parsed.title
    title = fit_title(title, counter, policy)
    drafts = chunk_sections(title, parsed.sections, counter, policy, max_chunks=limits.max_chunks)
    chunked = DocumentChunked(
        doc_id=event.doc_id,
        tenant=event.tenant,
        version=version,
        title=title,
        source=event.source,
        tags=event.tags,
        doc_hash=document_hash(title, parsed, event, policy),
        chunks=identify_chunks(event.doc_id, title, drafts),
        published_at=event.published_at,
    )
    return Ingested(chunked, media_type, parsed.replaced)


def identify_chunks(doc_id: str, title: str, drafts: Sequence[ChunkDraft]) -> list[Chunk]:
    """Name each chunk by what the model embeds for it.

    ``content_hash`` is the SHA-256 of the chunk's embedding text (title, heading path and
    text), and ``chunk_id`` is ``<doc_id>#<first 16 hex digits of it>``: a chunk that does not
    change keeps its id in the next version of the document, wherever it moves, and an edit
    elsewhere renames nothing else. A repeat of an identical chunk within the document gets
    ``-2``, ``-3``... appended, in order of appearance.

    Args:
        doc_id: The document's id.
        title: The title the chunks are embedded with.
        drafts: The document's chunks, in order.
    """
    seen: Counter[str] = Counter()
    chunks = []
    for position, draft in enumerate(drafts):
        content_hash = sha256_hex(embedding_text(title, draft.heading_path, draft.text))
        base_id = f"{doc_id}#{content_hash[:16]}"
        seen[base_id] += 1
        repeat = seen[base_id]
        chunks.append(
            Chunk(
                chunk_id=base_id if repeat == 1 else f"{base_id}-{repeat}",
                doc_id=doc_id,
                position=position,
                text=draft.text,
                heading_path=list(draft.heading_path),
                content_hash=content_hash,
                token_count=draft.token_count,
            )
        )
    return chunks


def document_hash(
    title: str, parsed: ParsedDocument, event: DocumentUpserted, policy: ChunkingPolicy
) -> str:
    """Return the hash of everything a version puts into the index.

    It covers the title and the parsed, normalised text (so the same document published again,
    in whatever encoding or content type that parses the same, hashes the same), the source and
    tags stored beside the chunks, and the chunking budget (which decides how the text is cut):
    two versions with equal hashes index identically.

    Args:
        title: The title as embedded.
        parsed: The parsed document.
        event: The upsert, for its source and tags.
        policy: The chunking budget.
    """
    canonical = {
        "title": title,
        "source": event.source,
        "tags": event.tags,
        "chunking": [policy.max_tokens, policy.overlap_tokens],
        "sections": [
            [list(section.heading_path), list(section.paragraphs)] for section in parsed.sections
        ],
    }
    return sha256_hex(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")))


def chunk_deletion(event: DocumentDeleted, version: int) -> DocumentChunked:
    """Return a version of the document with no chunks, which retires every older chunk.

    A delete travels the same ordered path as upserts, so it can never overtake (or be overtaken
    by) an upsert of the same document that is still on its way to the index.

    Args:
        event: The delete, as published (or read from a tombstone).
        version: See ``document_version``.
    """
    return DocumentChunked(
        doc_id=event.doc_id,
        tenant=event.tenant,
        version=version,
        doc_hash=sha256_hex(""),
        chunks=[],
        published_at=event.published_at,
    )


# --- statuses ---------------------------------------------------------------------------------


def chunked_status(chunked: DocumentChunked) -> DocumentStatus:
    """Return the ``chunked`` status of a document version.

    Args:
        chunked: The version just chunked.
    """
    return DocumentStatus(
        doc_id=chunked.doc_id,
        tenant=chunked.tenant,
        stage="chunked",
        version=chunked.version,
        chunk_count=len(chunked.chunks),
        doc_hash=chunked.doc_hash,
        published_at=chunked.published_at,
    )


def failed_status(event: DocumentUpserted, version: int, reason: str) -> DocumentStatus:
    """Return the ``failed`` status of a document version that cannot be chunked.

    Args:
        event: The upsert that failed.
        version: See ``document_version``.
        reason: Why, for whoever asks the gateway about the document.
    """
    return DocumentStatus(
        doc_id=event.doc_id,
        tenant=event.tenant,
        stage="failed",
        version=version,
        reason=reason,
        published_at=event.published_at,
    )
