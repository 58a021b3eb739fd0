"""The chunks the pipeline embeds, computed in this process with the ingestor's own code.

The bare-model baseline must embed exactly what the embedder embeds: the ingestor's chunks of the
same documents (same settings, same tokenizer), each as ``embedding_text`` makes it.
"""

from __future__ import annotations

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import DocumentUpserted

__all__ = ["pipeline_chunk_texts"]


def pipeline_chunk_texts(documents: list[dict[str, str]]) -> list[str]:
    """Return what the model reads for every chunk of ``documents``, in order.

    Args:
        documents: JSON-lines documents, as ``pipeline.synthetic_documents`` makes them.
    """
    from ragstream_ingestor.adapters.tokenizer import load_word_piece_counter
    from ragstream_ingestor.chunking import ChunkingPolicy
    from ragstream_ingestor.domain import IngestLimits, chunk_upsert
    from ragstream_ingestor.settings import IngestorSettings

    settings = IngestorSettings()
    counter = load_word_piece_counter()
    policy = ChunkingPolicy(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    limits = IngestLimits(settings.max_document_bytes, settings.max_chunks_per_document)
    texts: list[str] = []
    for document in documents:
        # The version only names the chunks' objects; it changes nothing in their text.
        chunked = chunk_upsert(DocumentUpserted(**document), 1, counter, policy, limits).chunked
        texts.extend(
            embedding_text(chunked.title, chunk.heading_path, chunk.text)
            for chunk in chunked.chunks
        )
    return texts
