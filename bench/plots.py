"""PNG plots of the results, with matplotlib (headless, the Agg backend).

matplotlib is imported on first use: without it the figures and the JSON are still written and
``available()`` says why the plots are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.metrics import backlogs

__all__ = [
    "available",
    "plot_caches",
    "plot_ingest",
    "plot_queries",
    "plot_retrieval_quality",
    "plot_sweep",
]


def available() -> bool:
    """Return whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    # No display here, and none needed: render straight to files.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ingest(result: dict[str, Any], path: Path) -> Path:
    """Plot the median run's burst: documents past each stage over time (a cumulative flow
    diagram), and beside it each service's backlog, the gap between two of those curves.

    Args:
        result: What ``ingest.run`` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    flow, services = result["flow"], result["flow_services"]
    stages = [key for key in flow if key != "t_s"]
    fig, (passed, waiting) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for stage in stages:
        passed.plot(flow["t_s"], flow[stage], label=stage)
    bare = (result.get("bare_model") or {}).get("chunks_per_s")
    documents, chunks = result.get("documents") or 0, result.get("chunks") or 0
    if bare and documents and chunks:
        # The same documents at the bare model's pace, from the first one received: the gap to
        # the indexed curve at the end is what the pipeline efficiency measures.
        passed.plot(
            [0.0, chunks / bare],
            [0.0, documents],
            color="grey",
            linestyle="--",
            label="the bare model's pace",
        )
    passed.set_title("documents past each stage")
    passed.set_ylabel("documents")
    passed.legend(loc="lower right")
    for before, (stage, gap) in zip(stages, backlogs(flow, stages).items(), strict=False):
        waiting.plot(flow["t_s"], gap, label=f"{services.get(stage, stage)} ({before} → {stage})")
    waiting.set_title("waiting for or in each service (its backlog)")
    waiting.legend(loc="upper right")
    for ax in (passed, waiting):
        ax.set_xlabel("seconds from the first document received")
        ax.grid(alpha=0.3)
    efficiency = result.get("pipeline_efficiency")
    fig.suptitle(
        f"Ingest burst, the median run: {result.get('documents', 0)} documents, "
        f"{result.get('chunks', 0)} chunks"
        + (f", pipeline efficiency {efficiency:.3f}" if efficiency is not None else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweep(result: dict[str, Any], path: Path) -> Path:
    """Plot freshness (p50, p99) against end-to-end chunks/s, a colour per embedder setting, each
    p50 with a line across the chunks/s of its rounds.

    Args:
        result: What ``sweep.run`` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    points = [p for p in result["points"] if p["freshness_p50_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for number, point in enumerate(points):
        colour = f"C{number}"
        rate, p50 = point["chunks_per_s"], point["freshness_p50_ms"] / 1000
        ax.scatter([rate], [p50], marker="o", color=colour, label=point["label"])
        if point["freshness_p99_ms"] is not None:
            ax.scatter([rate], [point["freshness_p99_ms"] / 1000], marker="^", color=colour)
        rounds = point.get("chunks_per_s_rounds") or []
        if len(rounds) > 1:
            # The spread of the point's rounds: how far apart two settings must be to differ.
            ax.plot([min(rounds), max(rounds)], [p50, p50], color=colour, linewidth=1)
    ax.set_xlabel("ingest throughput, chunks/s (end to end)")
    ax.set_ylabel("freshness, publish to indexed (s)")
    ax.set_title("Embedder batching: latency against throughput\n(circles p50, triangles p99)")
    ax.grid(alpha=0.3)
    ax.legend(title="records / wait", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_queries(result: dict[str, Any], path: Path) -> Path:
    """Plot p50 and p99 latency against concurrency, gateway and in-process side by side.

    Args:
        result: What ``queries.run`` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("gateway", "-"), ("in_process", "--")):
        levels = sorted(
            (int(level), figures) for level, figures in result[name].items() if "p50_ms" in figures
        )
        xs = [level for level, _ in levels]
        for percentile, marker in (("p50_ms", "o"), ("p99_ms", "^")):
            ax.plot(
                xs,
                [figures[percentile] for _, figures in levels],
                style,
                marker=marker,
                label=f"{name} {percentile[:3]}",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Query latency: through Kafka (gateway) and in-process")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_retrieval_quality(result: dict[str, Any], path: Path) -> Path:
    """Plot recall@5, MRR@10 and nDCG@10 against alpha, a line per question set and one pooled,
    the retriever's default alpha marked.

    Args:
        result: What ``retrieval_quality.run`` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    alphas = list(result["alphas"])
    positions = [float(alpha) for alpha in alphas]
    lines = {**result.get("by_set", {}), "all": result["alphas"]}
    metrics = ("recall@5", "mrr@10", "ndcg@10")
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 4.2), sharey=True)
    for ax, metric in zip(axes, metrics, strict=True):
        for name, by_alpha in lines.items():
            ax.plot(
                positions,
                [by_alpha[alpha][metric] for alpha in alphas],
                marker="o",
                linewidth=2.5 if name == "all" else 1.2,
                label=name.replace("_", " "),
            )
        if "default_alpha" in result:
            ax.axvline(float(result["default_alpha"]), color="grey", linestyle=":", linewidth=1)
        ax.set_title(metric)
        ax.set_xlabel("alpha (0 BM25 only, 1 vector only)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[0].legend(loc="lower center")
    fig.suptitle(
        f"Retrieval quality, {result['questions']} questions"
        + (
            f", the retriever's default alpha {result['default_alpha']} dotted"
            if "default_alpha" in result
            else ""
        )
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_caches(result: dict[str, Any], path: Path) -> Path:
    """Plot the answer caches: round trips by outcome (p50 bars, p95 marks) and, beside them, the
    semantic threshold swept: paraphrases served right against near misses served wrong.

    Args:
        result: What ``caches.run`` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    answers = result["answer_caches"]
    sweep = answers.get("semantic_threshold_sweep")
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(12 if sweep else 6, 4.5), squeeze=False)
    ax = axes[0][0]
    labels = {"miss": "miss\n(cache off)", "exact_hit": "exact hit", "semantic_hit": "semantic hit"}
    # A kind with no hit in the run has no bar rather than a made-up one.
    measured = [(key, answers[key]) for key in labels if answers[key]["p50_ms"] is not None]
    xs = range(len(measured))
    ax.bar(xs, [figures["p50_ms"] for _, figures in measured], 0.6, label="p50")
    ax.scatter(
        xs, [figures["p95_ms"] for _, figures in measured], marker="_", s=400, c="k", label="p95"
    )
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{labels[key]}\n(n={figures['count']:.0f})" for key, figures in measured])
    ax.set_ylabel("gateway round trip (ms)")
    rate = answers["paraphrases"]["paraphrase_hit_rate"]
    rate_text = "n/a" if rate is None else f"{rate:.0%}"
    ax.set_title(f"Answer caches: latency by outcome (paraphrase hit rate {rate_text})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    if sweep:
        ax = axes[0][1]
        rows = sweep["rows"]
        thresholds = [row["threshold"] for row in rows]
        ax.plot(
            thresholds,
            [row["paraphrase_hit_rate"] for row in rows],
            marker=".",
            label=f"paraphrases served their question's answer (of {sweep['paraphrases']})",
        )
        ax.plot(
            thresholds,
            [row["near_miss_false_hit_rate"] for row in rows],
            marker=".",
            c="tab:red",
            label=f"near misses served a wrong answer (of {sweep['near_misses']})",
        )
        ax.set_xlabel("semantic cache threshold (cosine of the questions' vectors)")
        ax.set_ylabel("share served from the cache")
        ax.set_ylim(0, 1)
        ax.set_title("The semantic threshold, swept (before the safety rule)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
