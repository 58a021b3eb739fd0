"""What the embedder embeds, and how vectors are put back on their chunks. No I/O, no model.

A batch holds several ``chunks`` records, each one version of one document. All their chunk texts
go to the model in a single call (identical texts only once), and the vectors are then dealt back
to one ``ChunksEmbedded`` per record, in record order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import ChunksEmbedded, DocumentChunked, DocumentStatus, EmbeddedChunk

__all__ = [
    "EmbeddingPlan",
    "embedded_events",
    "embedded_status",
    "failed_status",
    "plan_batch",
]


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
        vectors: The model's vectors for ``plan.texts``, in the same order.
        model_version: The model's identity, recorded on the event.

    Raises:
        ValueError: The vectors do not match the plan.
    """
    if len(vectors) != len(plan.texts):
        raise ValueError(f"expected {len(plan.texts)} vectors, the model returned {len(vectors)}")
    if len(documents) != len(plan.slots):
        raise ValueError("the plan was made for a different batch of documents")
    events = []
    for document, document_slots in zip(documents, plan.slots, strict=True):
        chunks = [
            EmbeddedChunk(
                chunk_id=chunk.chunk_id,
                doc_id=chunk.doc_id,
                position=chunk.position,
                text=chunk.text,
                heading_path=chunk.heading_path,
                content_hash=chunk.content_hash,
                vector=list(vectors[slot]),
            )
            for chunk, slot in zip(document.chunks, document_slots, strict=True)
        ]
        events.append(
            ChunksEmbedded(
                doc_id=document.doc_id,
                tenant=document.tenant,
                version=document.version,
                title=document.title,
                source=document.source,
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
