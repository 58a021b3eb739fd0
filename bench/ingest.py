"""Ingest benchmark: end-to-end chunks/s through the pipeline against the bare model's chunks/s.

The pipeline efficiency is the ratio of the two, measured in the same run on the same chunks:
what the five services, Kafka and Weaviate cost on top of the embedding model, which is the
bottleneck by design. Freshness (publish to indexed) per document gives p50 and p99.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from bench.chunk_texts import pipeline_chunk_texts
from bench.metrics import percentile, ratio
from bench.pipeline import (
    delete_documents,
    ingest_documents,
    run_token,
    synthetic_documents,
)

__all__ = ["bare_model_chunks_per_s", "run"]

_SEED = 20261129


def bare_model_chunks_per_s(model: Any, texts: list[str], batch_size: int) -> dict[str, float]:
    """Embed ``texts`` with ``model`` in this process; return chunks, seconds and chunks/s.

    Args:
        model: A loaded ``ragstream_embedding`` model, warmed up.
        texts: The chunks' embedding texts.
        batch_size: Texts per forward pass (the embedder's ``model_batch_size``, so that the two
            sides differ by the pipeline only).
    """
    started = time.perf_counter()
    model.embed(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {"chunks": len(texts), "seconds": seconds, "chunks_per_s": len(texts) / seconds}


def run(
    *, kafka: str, gateway_url: str, documents: int, console: Console, cleanup: bool = True
) -> dict[str, Any]:
    """Run the ingest benchmark and return its figures.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        documents: How many synthetic documents (about three chunks each).
        console: Progress output.
        cleanup: Delete the benchmark's documents afterwards.
    """
    token = run_token()
    docs = synthetic_documents(documents, seed=_SEED, token=token)
    texts = pipeline_chunk_texts(docs)
    # Imported here: torch loads for this benchmark only, not for every run of the harness.
    from ragstream_embedder.settings import EmbedderSettings
    from ragstream_embedding import load_default_model

    # The embedder's forward batch as the service would run it (its RAGSTREAM_* settings apply).
    forward_batch = EmbedderSettings().model_batch_size
    model = load_default_model()
    model.embed(texts[:32])  # warm-up: the first call pays for lazy initialisation
    # The bare model runs just before and just after the pipeline, and the faster run counts:
    # on a shared machine, load that comes and goes must not flatter the pipeline.
    console.print(f"[bold]ingest[/]: {len(texts)} chunks through the bare model")
    bare_before = bare_model_chunks_per_s(model, texts, forward_batch)
    console.print(f"[bold]ingest[/]: {documents} fresh documents through the pipeline")
    measured = ingest_documents(docs, kafka=kafka, gateway_url=gateway_url, console=console)
    console.print(f"[bold]ingest[/]: the same {len(texts)} chunks through the bare model again")
    bare_after = bare_model_chunks_per_s(model, texts, forward_batch)
    bare = max(bare_before, bare_after, key=lambda run: run["chunks_per_s"])
    if cleanup:
        delete_documents(gateway_url, measured.doc_ids)
    freshness = measured.freshness_ms
    return {
        "documents": measured.documents,
        "chunks": measured.chunks,
        "failed": measured.failed,
        "pipeline_seconds": measured.seconds,
        "pipeline_chunks_per_s": measured.chunks_per_s,
        "bare_model": bare,
        "bare_model_runs": [bare_before, bare_after],
        # Equal when the pipeline indexed every chunk the ingestor's code makes of the corpus.
        "bare_chunks_match_pipeline": len(texts) == measured.chunks,
        "pipeline_efficiency": ratio(measured.chunks_per_s, bare["chunks_per_s"]),
        "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
        "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
        "freshness_samples": len(freshness),
        "notes": (
            "Freshness is per document, from its received stage (the producer's timestamp) to "
            "indexed, in a bulk run: it includes queueing behind the rest of the batch. The bare "
            "model embeds the same documents' chunks, made in-process by the ingestor's own "
            "chunk_upsert and embedding_text, in one warm process, just before and just after "
            "the pipeline run; the faster of the two is the denominator."
        ),
    }
