"""What the embedder embeds, what it caches, and how vectors go back on chunks. No I/O, no model.

A batch holds several ``chunks`` records, each one version of one document. Their distinct chunk
texts are looked up in the embedding cache, keyed by the model's version and the text's hash; only
the misses go to the model, in a single call. The vectors are then dealt back to one
``ChunksEmbedded`` per record, in record order, every chunk with its vector whatever its source.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import ChunksEmbedded, DocumentChunked, DocumentStatus, EmbeddedChunk

__all__ = [
    "CACHE_KEY_PREFIX",
    "EmbeddingPlan",
    "ModelClock",
    "as_float32",
    "cache_key",
    "decode_vector",
    "embedded_events",
    "embedded_status",
    "encode_vector",
    "failed_status",
    "fill_vectors",
    "missing_slots",
    "plan_batch",
]

CACHE_KEY_PREFIX = "ragstream:emb"
# Little-endian IEEE 754 single precision: the model's own precision, at 4 bytes a dimension.
_FLOAT32_BYTES = struct.calcsize("<f")


@dataclass(frozen=True)
class EmbeddingPlan:
    """The texts for one model call, and where each chunk's vector will come from.

    Args:
        texts: The distinct texts to embed, in order of first appearance.
        slots: Per document, per chunk: the index of the chunk's text in ``texts``.
    """

    texts: list[str]
    slots: list[list[int]]

    @property
    def chunk_count(self) -> int:
        """How many chunks the plan covers (at least ``len(texts)``)."""
        return sum(len(document_slots) for document_slots in self.slots)


def plan_batch(documents: Sequence[DocumentChunked]) -> EmbeddingPlan:
    """Collect the embedding texts of every chunk of ``documents``, each distinct text once.

    Args:
        documents: The document versions of one batch, in record order.
    """
    index: dict[str, int] = {}
    texts: list[str] = []
    slots: list[list[int]] = []
    for document in documents:
        document_slots = []
        for chunk in document.chunks:
            text = embedding_text(document.title, chunk.heading_path, chunk.text)
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
            document_slots.append(index[text])
        slots.append(document_slots)
    return EmbeddingPlan(texts=texts, slots=slots)


@dataclass
class ModelClock:
    """The model's busy time, counting once the time its queued calls overlap.

    Calls are queued on the model one behind the other, so a call's busy time runs from when it
    was submitted, or from when the call before it finished if that was later, to when it
    finished.
    """

    free_since: float = 0.0

    def busy(self, submitted: float, done: float) -> float:
        """Return the busy time a call adds, and remember when it finished.

        Args:
            submitted: When the call was queued (``time.perf_counter``).
            done: When its vectors were there.
        """
        busy = max(0.0, done - max(submitted, self.free_since))
        self.free_since = max(self.free_since, done)
        return busy


def model_call_parts(chunk_counts: Sequence[int], max_texts: int) -> list[range]:
    """Split a batch's documents, in order, into runs of about ``max_texts`` chunks each.

    Each run is embedded in one model call and published as soon as that call is done, so the
    retriever indexes the first documents of a large batch while the model works on the rest. A
    document is never split; one larger than ``max_texts`` is a run of its own.

    Args:
        chunk_counts: Each document's number of chunks, in record order.
        max_texts: The most chunks a run holds, unless one document holds more.
    """
    parts: list[range] = []
    start = texts = 0
    for position, count in enumerate(chunk_counts):
        if position > start and texts + count > max_texts:
            parts.append(range(start, position))
            start, texts = position, 0
        texts += count
    if start < len(chunk_counts):
        parts.append(range(start, len(chunk_counts)))
    return parts


def cache_key(model_version: str, text: str) -> str:
    """Return the cache key of ``text``'s vector under one model version.

    The text is what the model reads (title, headings and chunk text), so a changed title or
    heading misses the cache as it should; the version keeps vectors of two models apart.

    Args:
        model_version: The model's identity (``EmbeddingModelPort.version``).
        text: The embedding text, from ``embedding_text``.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{CACHE_KEY_PREFIX}:{model_version}:{digest}"


def encode_vector(vector: Sequence[float]) -> bytes:
    """Return ``vector`` as little-endian float32 bytes, the cache's value format.

    Args:
        vector: The vector to store.
    """
    return struct.pack(f"<{len(vector)}f", *vector)


def decode_vector(data: bytes) -> list[float]:
    """Return the vector stored as little-endian float32 ``data``.

    Args:
        data: Bytes written by ``encode_vector``.

    Raises:
        ValueError: ``data`` is empty or not a whole number of float32 values.
    """
    if not data or len(data) % _FLOAT32_BYTES:
        raise ValueError(f"{len(data)} bytes are not a float32 vector")
    return list(struct.unpack(f"<{len(data) // _FLOAT32_BYTES}f", data))


def as_float32(vector: Sequence[float]) -> list[float]:
    """Return ``vector`` rounded to float32, exactly as it comes back out of the cache.

    A model's fresh vectors are published rounded like cached ones, so that a document's vectors
    never depend on which replica embedded it or whether the cache answered.

    Args:
        vector: A vector from the model.
    """
    return decode_vector(encode_vector(vector))


def missing_slots(cached: Sequence[Sequence[float] | None]) -> list[int]:
    """Return the positions of the texts the cache had no vector for, in order.

    Args:
        cached: The cache's answer for ``EmbeddingPlan.texts``, None where it missed.
    """
    return [slot for slot, vector in enumerate(cached) if vector is None]


def fill_vectors(
    cached: Sequence[Sequence[float] | None],
    missing: Sequence[int],
    fresh: Sequence[Sequence[float]],
) -> list[list[float]]:
    """Return one vector per planned text: the cached ones, with the model's in the gaps.

    Args:
        cached: The cache's answer for ``EmbeddingPlan.texts``, None where it missed.
        missing: ``missing_slots(cached)``: the texts that were sent to the model, in order.
        fresh: The model's vectors for those texts, in the same order.

    Raises:
        ValueError: The model returned a different number of vectors than it was sent texts.
    """
    if len(fresh) != len(missing):
        raise ValueError(f"expected {len(missing)} vectors, the model returned {len(fresh)}")
    vectors = [list(vector) if vector is not None else [] for vector in cached]
    for slot, vector in zip(missing, fresh, strict=True):
        vectors[slot] = list(vector)
    return vectors


def embedded_events(
    documents: Sequence[DocumentChunked],
    plan: EmbeddingPlan,
    vectors: Sequence[Sequence[float]],
    model_version: str,
) -> list[ChunksEmbedded]:
    """Return one ``ChunksEmbedded`` per document, each chunk carrying its vector.

    Args:
        documents: The documents ``plan`` was made from, in the same order.
        plan: See ``plan_batch``.
        vectors: The vectors of ``plan.texts`` (from the cache or the model), in the same order.
        model_version: The model's identity, recorded on the event.

    Raises:
        ValueError: The vectors do not match the plan.
    """
    if len(vectors) != len(plan.texts):
        raise ValueError(f"expected {len(plan.texts)} vectors, got {len(vectors)}")
    if len(documents) != len(plan.slots):
        raise ValueError("the plan was made for a different batch of documents")
    events = []
    for document, document_slots in zip(documents, plan.slots, strict=True):
        # Every field of the chunk travels on, its token count included, plus the vector.
        chunks = [
            EmbeddedChunk(**chunk.model_dump(), vector=list(vectors[slot]))
            for chunk, slot in zip(document.chunks, document_slots, strict=True)
        ]
        events.append(
            ChunksEmbedded(
                doc_id=document.doc_id,
                tenant=document.tenant,
                version=document.version,
                title=document.title,
                source=document.source,
                tags=document.tags,
                doc_hash=document.doc_hash,
                model=model_version,
                chunks=chunks,
                published_at=document.published_at,
            )
        )
    return events


def embedded_status(event: ChunksEmbedded) -> DocumentStatus | None:
    """Return the ``embedded`` status of a document version, or None for a deletion.

    A version without chunks is a deletion passing through: the ingestor reported no stage for
    it, and neither does the embedder; the retriever reports it deleted.

    Args:
        event: The version just embedded.
    """
    if not event.chunks:
        return None
    return DocumentStatus(
        doc_id=event.doc_id,
        tenant=event.tenant,
        stage="embedded",
        version=event.version,
        chunk_count=len(event.chunks),
        published_at=event.published_at,
    )


def failed_status(document: DocumentChunked, reason: str) -> DocumentStatus:
    """Return the ``failed`` status of a document version that cannot be embedded.

    Args:
        document: The version that failed.
        reason: Why, for whoever asks the gateway about the document.
    """
    return DocumentStatus(
        doc_id=document.doc_id,
        tenant=document.tenant,
        stage="failed",
        version=document.version,
        reason=reason,
        published_at=document.published_at,
    )
