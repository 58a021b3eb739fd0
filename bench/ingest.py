"""Ingest benchmark: end-to-end chunks/s through the pipeline against the bare model's chunks/s.

The pipeline efficiency is the ratio of the two, measured in the same run on the same chunks:
what the five services, Kafka and Weaviate cost on top of the embedding model, which is the
bottleneck by design. Freshness (publish to indexed) per document gives p50 and p99.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from bench.accounting import Reading, measure, time_accounts
from bench.chunk_texts import pipeline_chunk_texts
from bench.metrics import (
    backlog_peaks,
    cumulative_flow,
    median_interval,
    median_run,
    percentile,
    ratio,
)
from bench.pipeline import (
    STAGE_SERVICES,
    STAGES,
    delete_documents,
    ingest_documents,
    run_token,
    synthetic_documents,
)
from ragstream_cli.stack.paths import stack_dir

__all__ = ["bare_model_chunks_per_s", "run", "stage_backlogs"]

_SEED = 20261129
# The burst's cumulative flow is sampled this often: fine enough for a 20 s burst's shape, and a
# few hundred points in the JSON.
_FLOW_STEP_S = 0.1
# Kept per run for the figures, left out of the JSON's runs (the median run's flow is there).
_PER_DOCUMENT = ("freshness_ms", "stage_offsets")


def bare_model_chunks_per_s(model: Any, texts: list[str], batch_size: int) -> dict[str, float]:
    """Embed ``texts`` with ``model`` in this process; return chunks, seconds, chunks/s and the
    process's CPU seconds meanwhile (nothing else runs in it then).

    Args:
        model: A loaded ``ragstream_embedding`` model, warmed up.
        texts: The chunks' embedding texts.
        batch_size: Texts per forward pass (the embedder's ``model_batch_size``, so that the two
            sides differ by the pipeline only).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    model.embed(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {
        "chunks": len(texts),
        "seconds": seconds,
        "chunks_per_s": len(texts) / seconds,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def model_cpu_per_chunk(
    embedder_cpu_seconds: float | None, pipeline_chunks: int, bare: dict[str, float]
) -> dict[str, float | None]:
    """Compare the model's CPU per chunk inside the pipeline with the bare model's.

    The efficiency is the product of two shares: of the cores the model got beside the rest of
    the platform, and of the work a core did for it. ``bare_over_pipeline`` is the second: 1.0
    when a chunk cost the embedder (its model threads and its event loop) the CPU it cost the
    bare model; less when it cost more.

    Args:
        embedder_cpu_seconds: The embedder's CPU seconds over the pipeline run.
        pipeline_chunks: The chunks it embedded in that run.
        bare: A ``bare_model_chunks_per_s`` result on the same chunks: the run the efficiency
            is measured against, so that the two shares multiply to it. Being the faster of
            two, it is mostly the cheaper one too, which reads the second share low.
    """
    pipeline_ms = (
        1000 * embedder_cpu_seconds / pipeline_chunks
        if embedder_cpu_seconds and pipeline_chunks
        else None
    )
    bare_cpu = bare.get("cpu_seconds")
    bare_ms = 1000 * bare_cpu / bare["chunks"] if bare_cpu and bare.get("chunks") else None
    return {
        "pipeline_ms": pipeline_ms,
        "bare_ms": bare_ms,
        "bare_over_pipeline": bare_ms / pipeline_ms if bare_ms and pipeline_ms else None,
    }


def stage_backlogs(offsets: list[dict[str, float]]) -> dict[str, Any]:
    """Return the most documents waiting for (or in) each service in a burst, and when.

    Args:
        offsets: Per document, when it passed each stage (``IngestMeasurement.stage_offsets``).

    Returns:
        Per service: the stage it stamps, the peak count and its time from the first
        ``received``.
    """
    peaks = backlog_peaks(cumulative_flow(offsets, STAGES, _FLOW_STEP_S), STAGES)
    return {STAGE_SERVICES[stage]: {"stage": stage, **peak} for stage, peak in peaks.items()}


def _warm_up_pipeline(
    documents: int, *, kafka: str, gateway_url: str, console: Console, ingested: list[str]
) -> dict[str, Any]:
    """Send ``documents`` through the pipeline unmeasured (their ids go to ``ingested``);
    return how that burst went.

    A stack that has just started pays for what a running one has behind it: the broker's JIT
    compiling its request paths, first connections and lazy imports in the services. After
    three starts, Kafka spent 2.7-4.1 CPU-s on each of the first two 120-document bursts and
    1.8-2.6 on the third and fourth.
    """
    if documents <= 0:
        return {"documents": 0}
    console.print(f"[bold]ingest[/]: warming the pipeline up with {documents} documents")
    docs = synthetic_documents(documents, seed=_SEED + 1, token=run_token())
    measured = ingest_documents(docs, kafka=kafka, gateway_url=gateway_url, console=console)
    ingested.extend(measured.doc_ids)
    return {
        "documents": measured.documents,
        "chunks": measured.chunks,
        "seconds": measured.seconds,
        "chunks_per_s": measured.chunks_per_s,
    }


def _repetition(
    model: Any,
    forward_batch: int,
    *,
    kafka: str,
    gateway_url: str,
    embedder_url: str | None,
    documents: int,
    console: Console,
    ingested: list[str],
) -> dict[str, Any]:
    """One paired measurement: bare model, pipeline, bare model again, on one fresh corpus.

    The documents' ids go to ``ingested``.
    """
    token = run_token()
    docs = synthetic_documents(documents, seed=_SEED, token=token)
    texts = pipeline_chunk_texts(docs)
    # The bare model runs just before and just after the pipeline, and the faster run counts:
    # on a shared machine, load that comes and goes must not flatter the pipeline.
    console.print(f"[bold]ingest[/]: {len(texts)} chunks through the bare model")
    bare_before = bare_model_chunks_per_s(model, texts, forward_batch)
    console.print(f"[bold]ingest[/]: {documents} fresh documents through the pipeline")
    readings: list[Reading] = []
    measured = ingest_documents(
        docs,
        kafka=kafka,
        gateway_url=gateway_url,
        console=console,
        around=measure(stack_dir(), embedder_url, readings),
    )
    console.print(f"[bold]ingest[/]: the same {len(texts)} chunks through the bare model again")
    bare_after = bare_model_chunks_per_s(model, texts, forward_batch)
    ingested.extend(measured.doc_ids)
    bare = max(bare_before, bare_after, key=lambda run: run["chunks_per_s"])
    freshness = measured.freshness_ms
    efficiency = ratio(measured.chunks_per_s, bare["chunks_per_s"])
    accounts = time_accounts(readings[0], readings[-1], measured.chunks)
    console.print(
        f"[bold]ingest[/]: {measured.chunks_per_s:.1f} chunks/s through the pipeline, "
        f"{bare['chunks_per_s']:.1f} bare: efficiency {efficiency or 0:.3f}"
    )
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
        "pipeline_efficiency": efficiency or 0.0,
        "time_accounts": accounts,
        "model_cpu_per_chunk": model_cpu_per_chunk(
            accounts["cpu_seconds"].get("embedder"), measured.chunks, bare
        ),
        "freshness_ms": freshness,
        "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
        "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
        "stage_offsets": measured.stage_offsets,
        "backlogs": stage_backlogs(measured.stage_offsets),
    }


def run(
    *,
    kafka: str,
    gateway_url: str,
    documents: int,
    console: Console,
    embedder_url: str | None = None,
    repeats: int = 1,
    warm_up_documents: int = 0,
    cleanup: bool = True,
) -> dict[str, Any]:
    """Run the ingest benchmark ``repeats`` times and return the median run's figures.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        documents: How many synthetic documents per run (about three chunks each).
        console: Progress output.
        embedder_url: The embedder, for the time its model ran (``time_accounts``).
        repeats: Paired runs (bare model, pipeline, bare model) on fresh corpora; the reported
            run is the median by efficiency, and every run is kept in ``runs``.
        warm_up_documents: Documents sent through the pipeline, unmeasured, before the first
            run, as the bare model gets a warm-up call (``warm_up`` in the result).
        cleanup: Delete the benchmark's documents afterwards.
    """
    # Imported here: torch loads for this benchmark only, not for every run of the harness.
    from ragstream_embedder.settings import EmbedderSettings
    from ragstream_embedding import load_default_model

    # The embedder's forward batch as the service would run it (its RAGSTREAM_* settings apply).
    forward_batch = EmbedderSettings().model_batch_size
    model = load_default_model()
    warm_up = pipeline_chunk_texts(synthetic_documents(12, seed=_SEED, token=run_token()))
    model.embed(warm_up)  # the first call pays for lazy initialisation
    ingested: list[str] = []
    warmed = _warm_up_pipeline(
        warm_up_documents, kafka=kafka, gateway_url=gateway_url, console=console, ingested=ingested
    )
    runs = []
    for number in range(1, repeats + 1):
        if repeats > 1:
            console.print(f"[bold]ingest[/]: run {number} of {repeats}")
        runs.append(
            _repetition(
                model,
                forward_batch,
                kafka=kafka,
                gateway_url=gateway_url,
                embedder_url=embedder_url,
                documents=documents,
                console=console,
                ingested=ingested,
            )
        )
    if cleanup:
        # Only at the end: deleting documents sends work through the stack (Weaviate deletes,
        # tombstones), which between runs would share the cores with the next bare-model run.
        delete_documents(gateway_url, ingested)
    chosen = median_run(runs, "pipeline_efficiency")
    freshness = [value for one in runs for value in one["freshness_ms"]]
    efficiencies = [one["pipeline_efficiency"] for one in runs]
    # The goal read as CPU, which the machine's speed from one moment to the next moves less than
    # the wall-clock ratio: the median over the runs, not the median run's.
    cpu_ratios = [
        one["time_accounts"]["cpu_besides_model_per_model_cpu"]
        for one in runs
        if one["time_accounts"].get("cpu_besides_model_per_model_cpu") is not None
    ]
    work_ratios = [
        one["model_cpu_per_chunk"]["bare_over_pipeline"]
        for one in runs
        if one["model_cpu_per_chunk"]["bare_over_pipeline"] is not None
    ]
    return {
        **{
            key: value
            for key, value in chosen.items()
            if not key.startswith("freshness") and key not in _PER_DOCUMENT
        },
        # The median run's burst as a cumulative flow diagram: documents past each stage over
        # time, whose gaps are each service's backlog (plotted by ``plots.plot_ingest``).
        "flow": cumulative_flow(chosen["stage_offsets"], STAGES, _FLOW_STEP_S),
        "flow_services": STAGE_SERVICES,
        "repeats": repeats,
        "warm_up": warmed,
        "pipeline_efficiency_runs": efficiencies,
        "pipeline_efficiency_min": min(efficiencies),
        "pipeline_efficiency_max": max(efficiencies),
        # Where the true median lies, from these runs alone: the goal is met reliably only when
        # the whole interval clears it.
        "pipeline_efficiency_interval": median_interval(efficiencies),
        "cpu_besides_model_per_model_cpu_runs": cpu_ratios,
        "cpu_besides_model_per_model_cpu_median": (
            percentile(cpu_ratios, 50) if cpu_ratios else None
        ),
        "model_cpu_bare_over_pipeline_median": (
            percentile(work_ratios, 50) if work_ratios else None
        ),
        # Every run's documents together: the tail of one burst is not hidden by the median.
        "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
        "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
        "freshness_samples": len(freshness),
        "runs": [
            {key: value for key, value in one.items() if key not in _PER_DOCUMENT} for one in runs
        ],
        "notes": (
            "Each run is paired: the bare model embeds the run's chunks (made in-process by the "
            "ingestor's own chunk_upsert and embedding_text, in one warm process) just before and "
            "just after the pipeline ingests the same documents, and the faster bare run is that "
            "run's denominator. The figures reported are the median run's by efficiency; every "
            "run is in `runs`. Before the first run, `warm_up` documents went through the "
            "pipeline unmeasured, as the bare model gets a warm-up call. Freshness is per "
            "document, from its received stage (the producer's timestamp) to indexed, pooled "
            "over the runs, in bulk runs: it includes queueing behind the rest of the burst."
        ),
    }
