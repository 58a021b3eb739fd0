"""The plots render from result dictionaries shaped as the benchmarks return them."""

from __future__ import annotations

from pathlib import Path

from bench import plots


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TestPlots:
    def test_queries(self, tmp_path: Path) -> None:
        """Latency against concurrency renders, skipping levels that got no answers."""
        figures = {"p50_ms": 50.0, "p99_ms": 90.0}
        result = {
            "gateway": {"1": figures, "8": figures, "32": {"count": 0.0, "errors": 3.0}},
            "in_process": {"1": figures, "8": figures},
        }
        assert _is_png(plots.plot_queries(result, tmp_path / "q.png"))

    def test_retrieval_quality(self, tmp_path: Path) -> None:
        """A line per question set and one pooled, against alpha, render; so does a result
        with no sets or default (the shape before the reworded questions)."""
        scores = {"recall@5": 1.0, "mrr@10": 0.9, "ndcg@10": 0.95}
        alphas = {"0": scores, "0.5": scores, "1": scores}
        result = {
            "questions": 6,
            "alphas": alphas,
            "by_set": {"as_written": alphas, "reworded": alphas},
            "default_alpha": "0.5",
        }
        assert _is_png(plots.plot_retrieval_quality(result, tmp_path / "r.png"))
        bare = {"questions": 2, "alphas": alphas}
        assert _is_png(plots.plot_retrieval_quality(bare, tmp_path / "bare.png"))

    def test_ingest(self, tmp_path: Path) -> None:
        """The cumulative flow and the backlogs beside it render, with or without the ratio and
        the bare model's pace."""
        flow = {
            "t_s": [0.0, 0.1, 0.2],
            "received": [2.0, 3.0, 3.0],
            "chunked": [1.0, 3.0, 3.0],
            "embedded": [0.0, 1.0, 3.0],
            "indexed": [0.0, 0.0, 3.0],
        }
        services = {"chunked": "ingestor", "embedded": "embedder", "indexed": "retriever"}
        result = {"flow": flow, "flow_services": services, "documents": 3, "chunks": 9}
        assert _is_png(plots.plot_ingest(result, tmp_path / "i.png"))
        result["pipeline_efficiency"] = 0.9
        result["bare_model"] = {"chunks_per_s": 30.0}
        assert _is_png(plots.plot_ingest(result, tmp_path / "i2.png"))

    def test_sweep(self, tmp_path: Path) -> None:
        """Freshness against throughput renders, one labelled point per setting."""
        point = {
            "label": "16 msgs / 20 ms",
            "chunks_per_s": 20.0,
            "freshness_p50_ms": 900.0,
            "freshness_p99_ms": 1500.0,
        }
        result = {"points": [point, {**point, "label": "1 msgs / 0 ms", "chunks_per_s": 12.0}]}
        assert _is_png(plots.plot_sweep(result, tmp_path / "s.png"))
        rounds = {**point, "chunks_per_s_rounds": [19.0, 21.0]}
        assert _is_png(plots.plot_sweep({"points": [rounds]}, tmp_path / "rounds.png"))

    def test_caches(self, tmp_path: Path) -> None:
        """Latency bars per cache outcome render, leaving out an outcome that had no sample."""
        figures = {"count": 5.0, "p50_ms": 80.0, "p95_ms": 120.0}
        result = {
            "answer_caches": {
                "miss": figures,
                "exact_hit": {**figures, "p50_ms": 40.0},
                "semantic_hit": {"count": 0.0, "p50_ms": None, "p95_ms": None},
                "paraphrases": {"paraphrase_hit_rate": 0.25},
            }
        }
        assert _is_png(plots.plot_caches(result, tmp_path / "c.png"))
        result["answer_caches"]["semantic_threshold_sweep"] = {
            "paraphrases": 4,
            "near_misses": 2,
            "rows": [
                {"threshold": t, "paraphrase_hit_rate": 1 - t, "near_miss_false_hit_rate": 0.5}
                for t in (0.8, 0.9, 1.0)
            ],
        }
        assert _is_png(plots.plot_caches(result, tmp_path / "c2.png"))
