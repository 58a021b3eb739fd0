"""Run the benchmarks against the local stack: JSON per benchmark, PNG plots, a summary table.

Usage (from the repository root, after ``make install``)::

    .venv/bin/python -m bench.run            # the full set (make bench)
    .venv/bin/python -m bench.run --quick    # a reduced set, a few minutes (make bench QUICK=1)
    .venv/bin/python -m bench.run --only queries,retrieval_quality
    .venv/bin/python -m bench.run --skip sweep

The stack is started first if it is not running (``ensure_platform``, as ``ragstream up``).
Results go to ``bench/results/<benchmark>.json`` and ``bench/results/summary.json``; plots beside
them when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from rich.console import Console

from bench import caches, ingest, plots, queries, retrieval_quality, sweep
from bench.results import RESULTS_DIR, environment, print_summary, write_result

__all__ = ["BENCHMARKS", "Scale", "main"]

BENCHMARKS = ("ingest", "caches", "queries", "retrieval_quality", "sweep")
# A fresh broker's C2 compiler takes 1-4 CPU-s of a 120-document burst until about a dozen
# bursts have gone through it, then 0.9-1.3 (bench/README.md). It is the traffic that warms it;
# uptime is what the benchmark can see, and a stack this old has usually carried that much.
KAFKA_WARM_AFTER_S = 20 * 60


@dataclass(frozen=True)
class Scale:
    """How much each benchmark does: the quick scale proves the harness, the full one measures."""

    ingest_documents: int
    ingest_repeats: int
    ingest_warm_up_documents: int
    cache_documents: int
    cache_answer_seconds: float
    query_requests: int
    query_seconds: float
    query_rounds: int
    concurrencies: tuple[int, ...]
    sweep_points: tuple[sweep.SweepPoint, ...]
    sweep_documents: int
    sweep_rounds: int
    sweep_warm_up_documents: int


FULL = Scale(
    ingest_documents=120,
    # Five, not three: the machine's speed swings within seconds, and one paired run at 50f3376's
    # successor came out at 1.000 (the embedder spent 21 CPU-s on the chunks, 27-30 in the others).
    ingest_repeats=5,
    ingest_warm_up_documents=240,
    cache_documents=40,
    cache_answer_seconds=600.0,
    query_requests=400,
    query_seconds=60.0,
    query_rounds=4,
    concurrencies=(1, 8, 32),
    sweep_points=sweep.FULL_POINTS,
    sweep_documents=60,
    # Two, in opposite orders: one burst per point ranked them differently from run to run.
    sweep_rounds=2,
    sweep_warm_up_documents=12,
)
QUICK = Scale(
    ingest_documents=12,
    ingest_repeats=1,
    ingest_warm_up_documents=6,
    cache_documents=6,
    cache_answer_seconds=180.0,
    query_requests=24,
    query_seconds=20.0,
    query_rounds=2,
    concurrencies=(1, 8, 32),
    sweep_points=sweep.QUICK_POINTS,
    sweep_documents=8,
    sweep_rounds=1,
    sweep_warm_up_documents=2,
)


def _server_versions(weaviate_url: str, weaviate_api_key: str) -> dict[str, Any]:
    from ragstream_cli.stack.config import KAFKA_VERSION
    from ragstream_cli.stack.weaviate import weaviate_headers

    try:
        meta = httpx.get(
            f"{weaviate_url}/v1/meta", headers=weaviate_headers(weaviate_api_key), timeout=5.0
        )
        weaviate_version = meta.json()["version"]
    except (httpx.HTTPError, KeyError, ValueError):
        weaviate_version = None
    return {"servers": {"kafka": KAFKA_VERSION, "weaviate": weaviate_version}}


def _server_uptimes() -> dict[str, float | None]:
    """Seconds each server has been up: a young Kafka is still compiling itself."""
    from ragstream_cli.stack.kafka import kafka_state_dir
    from ragstream_cli.stack.processes import process_age_s
    from ragstream_cli.stack.weaviate import weaviate_state_dir

    return {
        "kafka": process_age_s(kafka_state_dir() / "kafka.pid"),
        "weaviate": process_age_s(weaviate_state_dir() / "weaviate.pid"),
    }


def _summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, str]]:
    rows: list[tuple[str, str, Any, str]] = []
    if "ingest" in results:
        r = results["ingest"]
        interval = r.get("pipeline_efficiency_interval") or {}
        rows += [
            (
                "ingest",
                "pipeline chunks/s",
                r["pipeline_chunks_per_s"],
                f"{r['chunks']} chunks, publish to all indexed",
            ),
            (
                "ingest",
                "bare model chunks/s",
                r["bare_model"]["chunks_per_s"],
                "same chunks, one warm process",
            ),
            (
                "ingest",
                "pipeline_efficiency",
                r["pipeline_efficiency"],
                f"pipeline / bare model, median of {r.get('repeats', 1)} paired runs",
            ),
            (
                "ingest",
                "pipeline_efficiency_min",
                r.get("pipeline_efficiency_min"),
                "the worst of those runs",
            ),
            (
                "ingest",
                "pipeline_efficiency median, low end",
                interval.get("low"),
                _interval_note(interval),
            ),
            (
                "ingest",
                "model chunks/s inside the pipeline",
                r.get("time_accounts", {}).get("model_chunks_per_s"),
                "per second of the embedder's model time, same run",
            ),
            (
                "ingest",
                "model busy share",
                r.get("time_accounts", {}).get("model_busy_share"),
                "embedder model time / pipeline wall time",
            ),
            (
                "ingest",
                "cores besides the model",
                r.get("time_accounts", {}).get("cores_besides_model"),
                "CPU-s of every other stack process and the benchmark / wall time",
            ),
            (
                "ingest",
                "cpu_besides_model_per_model_cpu",
                r.get("cpu_besides_model_per_model_cpu_median"),
                "every other process's CPU-s per CPU-s of the embedder, median of the runs "
                "(the goal as CPU: < 0.15)",
            ),
            (
                "ingest",
                "model CPU per chunk, bare / pipeline",
                r.get("model_cpu_bare_over_pipeline_median"),
                "1.0: a chunk cost the embedder the CPU it cost the faster bare run of its pair; "
                "median of the runs",
            ),
            (
                "ingest",
                "freshness p50 (ms)",
                r["freshness_p50_ms"],
                "per document, received to indexed",
            ),
            (
                "ingest",
                "freshness_p99_ms",
                r["freshness_p99_ms"],
                "per document, received to indexed",
            ),
        ]
        rows += [
            (
                "ingest",
                f"backlog peak, {service} (documents)",
                peak["peak"],
                f"median run, waiting for or in the {service} ({peak['stage']} not yet stamped), "
                f"{peak['at_s']:.1f} s after the first document was received; ingest.png",
            )
            for service, peak in r.get("backlogs", {}).items()
        ]
    if "caches" in results:
        r = results["caches"]
        rows += [
            (
                "caches",
                "embedding cache hit rate (re-ingest)",
                r["warm_hit_rate"],
                "embedder counters",
            ),
            (
                "caches",
                "warm / cold chunks/s",
                r["warm_over_cold_chunks_per_s"],
                "same documents twice",
            ),
        ]
        answers = r["answer_caches"]
        paraphrases = answers["paraphrases"]
        hits_by_kind = paraphrases["hits_by_kind"]
        rows += [
            (
                "caches",
                "paraphrase_hit_rate",
                r["paraphrase_hit_rate"],
                f"{paraphrases['hits']}/{paraphrases['asked']} paraphrases cached "
                f"(semantic {hits_by_kind['semantic']:.0f}, exact {hits_by_kind['exact']:.0f}, "
                f"llm {hits_by_kind['llm']:.0f}); "
                f"{paraphrases['hits_same_documents']} cite the original's documents; "
                "semantic cache turned on (off by default)",
            ),
            (
                "caches",
                "near_miss_false_hit_rate",
                r["near_miss_false_hit_rate"],
                f"{answers['near_misses']['false_hits']}/{answers['near_misses']['asked']} near "
                "misses served a cached answer (each a wrong answer); "
                f"{_threshold_note(answers['semantic_threshold_sweep'])}",
            ),
            (
                "caches",
                "retyped_exact_hit_rate",
                r["retyped_exact_hit_rate"],
                "each question asked again in lower case without its question mark, served by "
                "the exact cache",
            ),
            (
                "caches",
                "answer_cache_miss_p50_ms",
                r["answer_cache_miss_p50_ms"],
                f'gateway round trip, "cache": false, {answers["miss"]["count"]:.0f} questions',
            ),
            (
                "caches",
                "answer_cache_exact_hit_p50_ms",
                r["answer_cache_exact_hit_p50_ms"],
                f"same question again, {answers['exact_hit']['count']:.0f} hits; "
                f"hit/miss p50 {_times(answers['exact_over_miss_p50'])}",
            ),
            (
                "caches",
                "answer_cache_semantic_hit_p50_ms",
                r["answer_cache_semantic_hit_p50_ms"],
                f"paraphrases, {answers['semantic_hit']['count']:.0f} hits; "
                f"hit/miss p50 {_times(answers['semantic_over_miss_p50'])}",
            ),
        ]
    if "queries" in results:
        r = results["queries"]
        for level in map(str, r["concurrency"]):
            gateway, local = r["gateway"].get(level, {}), r["in_process"].get(level, {})
            rows.append(
                (
                    "queries",
                    f"c={level} p50/p95/p99 ms (q/s)",
                    f"gateway {_triple(gateway)}; in-process {_triple(local)}",
                    "same questions, same run",
                )
            )
        rows += [
            (
                "queries",
                "query_overhead_p50_ms",
                r["query_overhead_p50_ms"],
                "gateway - in-process, c=8",
            ),
            (
                "queries",
                "query_overhead_p99_ms",
                r["query_overhead_p99_ms"],
                "gateway - in-process, c=8",
            ),
        ]
        for level, figures in r.get("outside_stages", {}).items():
            rows.append(
                (
                    "queries",
                    f"outside stages p50 ms, c={level}",
                    figures.get("p50_ms"),
                    f"gateway total - retrieve - generate; p99 {_ms(figures.get('p99_ms'))}",
                )
            )
        for level, figures in r["time_to_first_token_by_concurrency"].items():
            rows.append(
                (
                    "queries",
                    "ttft_p50_ms" if level == "1" else f"ttft p50 ms, c={level}",
                    figures.get("p50_ms"),
                    f"gateway SSE, c={level}, request to first delta; p95 "
                    f"{_ms(figures.get('p95_ms'))}, done p50 {_ms(figures.get('done_p50_ms'))} "
                    f"({figures['count']:.0f} answers)",
                )
            )
    if "retrieval_quality" in results:
        rows.extend(_retrieval_rows(results["retrieval_quality"]))
    if "sweep" in results:
        for point in results["sweep"]["points"]:
            rows.append(
                (
                    "sweep",
                    point["label"],
                    f"{point['chunks_per_s']:.1f} chunks/s, freshness p50 "
                    f"{_ms(point['freshness_p50_ms'])} p99 {_ms(point['freshness_p99_ms'])}",
                    f"{results['sweep']['documents_per_point']} documents a round; chunks/s "
                    "median of "
                    + ", ".join(f"{rate:.1f}" for rate in point.get("chunks_per_s_rounds", [])),
                )
            )
    return rows


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _threshold_note(sweep: dict[str, Any]) -> str:
    """Name the lowest swept threshold that served no near miss, and its paraphrase hit rate."""
    safe = [row for row in sweep["rows"] if row["near_miss_false_hit_rate"] == 0]
    if not safe:
        return "every swept threshold served a near miss"
    row = safe[0]
    return (
        f"swept: none served from {row['threshold']:.2f}, "
        f"where {row['paraphrase_hit_rate']:.0%} of paraphrases are"
    )


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _interval_note(interval: dict[str, float]) -> str:
    if not interval:
        return "not computed"
    if interval["confidence"] <= 0:
        return "one run says nothing of the median's spread"
    return (
        f"the median lies in {interval['low']:.3f}-{interval['high']:.3f} "
        f"with {interval['confidence']:.0%} confidence (order statistics of the runs)"
    )


def _errors(figures: dict[str, Any]) -> str:
    """Return "N errors", with the most frequent kind when the run kept them."""
    kinds = figures.get("error_kinds") or {}
    commonest = f", most often {next(iter(kinds))}" if kinds else ""
    return f"{figures.get('errors', 0):.0f} errors{commonest}"


def _triple(figures: dict[str, Any]) -> str:
    if "p50_ms" not in figures:
        return f"no answers ({_errors(figures)})"
    errors = f", {_errors(figures)}" if figures.get("errors") else ""
    return (
        f"{figures['p50_ms']:.0f}/{figures['p95_ms']:.0f}/{figures['p99_ms']:.0f} "
        f"({figures['throughput_per_s']:.1f}{errors})"
    )


def _headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ingest_r, queries_r = results.get("ingest", {}), results.get("queries", {})
    caches_r, retrieval_r = results.get("caches", {}), results.get("retrieval_quality", {})
    alphas = retrieval_r.get("alphas", {})
    return {
        "pipeline_efficiency": ingest_r.get("pipeline_efficiency"),
        "pipeline_efficiency_min": ingest_r.get("pipeline_efficiency_min"),
        "pipeline_efficiency_interval": ingest_r.get("pipeline_efficiency_interval"),
        "cpu_besides_model_per_model_cpu": ingest_r.get("cpu_besides_model_per_model_cpu_median"),
        "freshness_p50_ms": ingest_r.get("freshness_p50_ms"),
        "freshness_p99_ms": ingest_r.get("freshness_p99_ms"),
        "query_overhead_p50_ms": queries_r.get("query_overhead_p50_ms"),
        "query_overhead_p99_ms": queries_r.get("query_overhead_p99_ms"),
        "hops_alone_p50_ms": queries_r.get("hops_alone_p50_ms"),
        "hops_alone_p99_ms": queries_r.get("hops_alone_p99_ms"),
        "ttft_p50_ms": queries_r.get("ttft_p50_ms"),
        "embedding_cache_hit_rate": caches_r.get("warm_hit_rate"),
        "paraphrase_hit_rate": caches_r.get("paraphrase_hit_rate"),
        "near_miss_false_hit_rate": caches_r.get("near_miss_false_hit_rate"),
        "retyped_exact_hit_rate": caches_r.get("retyped_exact_hit_rate"),
        "answer_cache_miss_p50_ms": caches_r.get("answer_cache_miss_p50_ms"),
        "answer_cache_exact_hit_p50_ms": caches_r.get("answer_cache_exact_hit_p50_ms"),
        "answer_cache_semantic_hit_p50_ms": caches_r.get("answer_cache_semantic_hit_p50_ms"),
        "best_alpha": retrieval_r.get("best_alpha"),
        "mrr10_at_best_alpha": alphas.get(retrieval_r.get("best_alpha"), {}).get("mrr@10"),
        "mrr10_at_default_alpha": alphas.get(retrieval_r.get("default_alpha"), {}).get("mrr@10"),
    }


def _retrieval_rows(r: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """BM25 alone, vectors alone, the retriever's default alpha and the best one: pooled figures,
    each set's MRR@10 beside them (every alpha is in the JSON and the plot)."""
    sets = ", ".join(
        f"{count} {name.replace('_', ' ')}" for name, count in r["question_sets"].items()
    )
    labels = {"0": "BM25 only", "1": "vector only"}
    labels.setdefault(r["default_alpha"], "the retriever's default")
    labels.setdefault(r["best_alpha"], "best MRR@10")
    rows = []
    for alpha, label in labels.items():
        figures = r["alphas"][alpha]
        by_set = ", ".join(
            f"{name.replace('_', ' ')} {scores[alpha]['mrr@10']:.3f}"
            for name, scores in r["by_set"].items()
        )
        rows.append(
            (
                "retrieval",
                f"alpha {alpha} ({label})",
                " ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                f"{r['questions']} questions ({sets}) over {r['documents']} documents; "
                f"MRR@10 {by_set}",
            )
        )
    return rows


def _selection(only: str | None, skip: str | None) -> list[str]:
    chosen = [name.strip() for name in only.split(",")] if only else list(BENCHMARKS)
    skipped = {name.strip() for name in skip.split(",")} if skip else set()
    unknown = (set(chosen) | skipped) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"unknown benchmarks: {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}"
        )
    return [name for name in BENCHMARKS if name in chosen and name not in skipped]


def _scale(quick: bool, ingest_repeats: int | None) -> Scale:
    base = QUICK if quick else FULL
    return base if ingest_repeats is None else replace(base, ingest_repeats=ingest_repeats)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and print the summary; return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced run that proves the harness"
    )
    parser.add_argument("--only", metavar="A,B", help=f"run only these, of {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--skip", metavar="A,B", help="run all but these (sweep restarts the embedder)"
    )
    parser.add_argument(
        "--ingest-repeats",
        type=int,
        metavar="N",
        help="paired ingest runs (5 by default, 1 with --quick): more give a steadier median",
    )
    args = parser.parse_args(argv)
    selected = _selection(args.only, args.skip)
    if args.ingest_repeats is not None and args.ingest_repeats < 1:
        parser.error("--ingest-repeats must be at least 1")
    scale = _scale(args.quick, args.ingest_repeats)
    from ragstream_cli.stack import weaviate_api_key
    from ragstream_cli.stack.platform import ensure_platform
    from ragstream_common.logging import configure_logging

    # The in-process services log every query at info: keep the progress readable.
    configure_logging("bench", level="WARNING", json=False)
    console = Console(stderr=True)
    platform = ensure_platform()
    # The in-process retrieval (queries, retrieval quality) reaches the local node with its key.
    key = os.environ["RAGSTREAM_WEAVIATE_API_KEY"] = weaviate_api_key()
    uptimes = _server_uptimes()
    env = environment(
        {
            **_server_versions(platform.weaviate_url, key),
            "server_uptime_s": uptimes,
            "quick": args.quick,
        }
    )
    kafka_age = uptimes["kafka"]
    if "ingest" in selected and kafka_age is not None and kafka_age < KAFKA_WARM_AFTER_S:
        console.print(
            f"[yellow]Kafka started {kafka_age / 60:.0f} min ago[/]: its JIT compiler is still "
            "busy, so the ingest figures will read low (bench/README.md, Kafka's compiler on a "
            "young stack)."
        )
    kafka, gateway = platform.kafka_bootstrap, platform.gateway_url
    questions = [q["question"] for q in retrieval_quality.load_questions()]

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "ingest": lambda: ingest.run(
            kafka=kafka,
            gateway_url=gateway,
            documents=scale.ingest_documents,
            embedder_url=platform.service_urls["embedder"],
            repeats=scale.ingest_repeats,
            warm_up_documents=scale.ingest_warm_up_documents,
            console=console,
        ),
        "caches": lambda: caches.run(
            kafka=kafka,
            gateway_url=gateway,
            embedder_url=platform.service_urls["embedder"],
            generator_url=platform.service_urls["generator"],
            documents=scale.cache_documents,
            answer_seconds=scale.cache_answer_seconds,
            console=console,
        ),
        "queries": lambda: queries.run(
            gateway_url=gateway,
            questions=questions,
            concurrencies=scale.concurrencies,
            limits=queries.LoadLimits(scale.query_requests, scale.query_seconds),
            rounds=scale.query_rounds,
            console=console,
        ),
        "retrieval_quality": lambda: retrieval_quality.run(
            kafka=kafka, gateway_url=gateway, console=console
        ),
        "sweep": lambda: sweep.run(
            kafka=kafka,
            gateway_url=gateway,
            points=scale.sweep_points,
            documents=scale.sweep_documents,
            rounds=scale.sweep_rounds,
            warm_up_documents=scale.sweep_warm_up_documents,
            console=console,
        ),
    }
    plotters: dict[str, Callable[[dict[str, Any], Any], Any]] = {
        "caches": plots.plot_caches,
        "ingest": plots.plot_ingest,
        "queries": plots.plot_queries,
        "retrieval_quality": plots.plot_retrieval_quality,
        "sweep": plots.plot_sweep,
    }
    results: dict[str, dict[str, Any]] = {}
    for name in selected:
        started = time.monotonic()
        results[name] = runners[name]()
        results[name]["seconds"] = time.monotonic() - started
        path = write_result(name, results[name], env)
        console.print(f"[green]wrote[/] {path.relative_to(RESULTS_DIR.parent.parent)}")
        if name in plotters:
            if plots.available():
                plotters[name](results[name], RESULTS_DIR / f"{name}.png")
            else:
                console.print(f"[yellow]no plot for {name}[/]: matplotlib is not installed")
    write_result("summary", {"selected": selected, **_headline(results)}, env)
    print_summary(_summary_rows(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
