"""The harness's pure parts: the synthetic corpus, bounded load runs, the eval set and scoring."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bench.pipeline import STAGES, run_token, stage_offsets, synthetic_documents
from bench.queries import LoadLimits, alternate, failure_kind, run_load
from bench.retrieval_quality import (
    CORPUS,
    best_alpha,
    eval_documents,
    load_paraphrases,
    load_questions,
    reworded_questions,
    score,
    score_sets,
)
from bench.run import (
    BENCHMARKS,
    FULL,
    QUICK,
    _headline,
    _scale,
    _selection,
    _summary_rows,
    _triple,
    main,
)
from bench.sweep import FULL_POINTS, SweepPoint
from ragstream_embedder.settings import EmbedderSettings


class TestSyntheticDocuments:
    def test_same_seed_same_text_but_for_the_token(self) -> None:
        """A seed fixes the corpus; only the run token (the cache buster) differs between runs."""
        first = synthetic_documents(3, seed=7, token="aaaa")
        second = synthetic_documents(3, seed=7, token="bbbb")
        # Lower-cased: a sentence that starts with the token capitalises it.
        assert [d["content"].lower().replace("aaaa", "") for d in first] == [
            d["content"].lower().replace("bbbb", "") for d in second
        ]

    def test_unique_ids_carrying_the_token(self) -> None:
        """Every document has its own id, named after the run, so runs never overwrite each other."""
        ids = [d["doc_id"] for d in synthetic_documents(20, seed=1, token="amber otter")]
        assert len(set(ids)) == 20
        assert all("amber-otter" in doc_id for doc_id in ids)

    def test_sections_of_the_asked_size(self) -> None:
        """Each document has the asked number of headed sections of at least the asked length."""
        content = synthetic_documents(1, seed=3, token="x", sections=4, words_per_section=50)[0][
            "content"
        ]
        assert content.count("\n## ") == 4
        assert len(content.split()) >= 200


class TestRunToken:
    def test_four_words_differing_between_runs(self) -> None:
        """A run token is four words, and two runs (almost surely) get different ones."""
        tokens = {run_token() for _ in range(20)}
        assert len(tokens) > 1
        assert all(len(token.split()) == 4 for token in tokens)


class TestRunLoad:
    async def test_bounded_by_count(self) -> None:
        """A run sends exactly the requested number of requests, however many workers."""
        asked: list[str] = []

        async def ask(question: str) -> None:
            asked.append(question)

        summary = await run_load(ask, ["a", "b"], 4, LoadLimits(requests=10, seconds=30))
        assert len(asked) == 10
        assert summary["count"] == 10
        assert set(asked) == {"a", "b"}

    async def test_bounded_by_time(self) -> None:
        """Workers stop taking requests once the time bound has passed."""

        async def ask(question: str) -> None:
            await asyncio.sleep(0.05)

        summary = await run_load(ask, ["q"], 2, LoadLimits(requests=10_000, seconds=0.2))
        assert summary["count"] < 20

    async def test_failures_are_counted_not_timed(self) -> None:
        """A failed request counts as an error and adds no latency sample."""

        async def ask(question: str) -> None:
            if question == "bad":
                raise RuntimeError("no")

        summary = await run_load(ask, ["good", "bad"], 1, LoadLimits(requests=4, seconds=30))
        assert summary["count"] == 2
        assert summary["errors"] == 2

    async def test_failures_are_named_by_kind(self) -> None:
        """An HTTP error is named by its status and the API's message, anything else by type."""
        request = httpx.Request("POST", "http://127.0.0.1/v1/query")
        timeout = httpx.Response(504, json={"detail": "no answer within 30 s"}, request=request)

        async def ask(question: str) -> None:
            if question == "slow":
                raise httpx.HTTPStatusError("504", request=request, response=timeout)
            raise httpx.ReadTimeout("timed out", request=request)

        summary = await run_load(ask, ["slow", "slow", "lost"], 1, LoadLimits(3, seconds=30))
        assert summary["errors"] == 3
        assert summary["error_kinds"] == {
            "HTTP 504: no answer within 30 s": 2,
            "ReadTimeout: timed out": 1,
        }
        assert "most often HTTP 504: no answer within 30 s" in _triple(
            {"p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "throughput_per_s": 1.0, **summary}
        )

    def test_a_failed_stream_is_named_without_its_unread_body(self) -> None:
        """A streamed answer fails its status check before its body is read; naming it must
        not raise, or the failure would end the whole load run instead of being counted."""
        request = httpx.Request("POST", "http://127.0.0.1/v1/query")
        unread = httpx.Response(503, stream=httpx.ByteStream(b"{}"), request=request)
        error = httpx.HTTPStatusError("503", request=request, response=unread)
        assert failure_kind(error) == "HTTP 503"

    def test_a_body_that_is_not_an_object_is_named_as_it_is(self) -> None:
        request = httpx.Request("POST", "http://127.0.0.1/v1/query")
        for response, kind in (
            (httpx.Response(502, json=["upstream"], request=request), "HTTP 502: ['upstream']"),
            (httpx.Response(502, text="bad gateway", request=request), "HTTP 502: bad gateway"),
        ):
            error = httpx.HTTPStatusError("502", request=request, response=response)
            assert failure_kind(error) == kind

    async def test_a_clean_run_has_no_error_kinds(self) -> None:
        async def ask(question: str) -> None:
            return None

        summary = await run_load(ask, ["q"], 1, LoadLimits(requests=2, seconds=30))
        assert summary["errors"] == 0
        assert "error_kinds" not in summary


class TestAlternate:
    async def test_paths_take_turns_and_pool_their_rounds(self) -> None:
        """Each round asks every path its share in turn; each path's rounds are pooled."""
        asked: list[str] = []

        def path(name: str) -> Callable[[str], Awaitable[None]]:
            async def ask(question: str) -> None:
                asked.append(name)
                if question == "bad":
                    raise RuntimeError("no")

            return ask

        pooled = await alternate(
            {"gateway": path("gateway"), "local": path("local")},
            ["good", "good", "bad"],
            2,
            LoadLimits(requests=9, seconds=30),
            rounds=3,
        )
        # Three requests per path per round (9 over 3 rounds), the paths one after the other.
        turns = [name for index, name in enumerate(asked) if index % 3 == 0]
        assert turns == ["gateway", "local"] * 3
        for run in pooled.values():
            # Every round starts the questions afresh: two good and one bad per round.
            assert len(run.latencies_ms) == 6
            assert run.errors == 3
            assert run.summary()["count"] == 6

    async def test_the_time_bound_is_shared_between_rounds(self) -> None:
        """A path's seconds are split between its rounds, so the level's bound still holds."""

        async def ask(question: str) -> None:
            await asyncio.sleep(0.05)

        pooled = await alternate(
            {"only": ask}, ["q"], 1, LoadLimits(requests=10_000, seconds=0.4), rounds=2
        )
        assert 0.3 < pooled["only"].seconds < 0.6
        assert pooled["only"].summary()["count"] < 14


class TestEvalSet:
    def test_every_relevant_document_is_in_the_corpus(self) -> None:
        """Each question names relevant documents that the evaluation corpus really holds."""
        ids = {doc["doc_id"] for doc in eval_documents()}
        questions = load_questions()
        assert len(questions) >= 20
        for question in questions:
            assert question["relevant"], question["id"]
            assert set(question["relevant"]) <= ids, question["id"]

    def test_samples_named_as_ragstream_up_names_them(self) -> None:
        """Sample documents are ``sample-<file stem>``, the ids ``ragstream up`` gives them."""
        stems = {f"sample-{path.stem}" for path in Path(CORPUS).glob("*.md")}
        assert stems <= {doc["doc_id"] for doc in eval_documents()}

    def test_question_ids_unique(self) -> None:
        """Question ids are unique, so per-question results can be told apart."""
        ids = [q["id"] for q in load_questions()]
        assert len(ids) == len(set(ids))

    def test_document_ids_unique_and_distractors_answer_nothing(self) -> None:
        """Every document has an id of its own, and no question counts a distractor relevant:
        they are there to be ranked wrongly, never to be found."""
        ids = [doc["doc_id"] for doc in eval_documents()]
        assert len(ids) == len(set(ids))
        distractors = {doc_id for doc_id in ids if doc_id.startswith("distractor-")}
        assert len(distractors) >= 30
        relevant = {doc_id for q in load_questions() for doc_id in q["relevant"]}
        assert not relevant & distractors

    def test_every_document_names_a_source_of_its_own_files(self) -> None:
        """Unnamed, a document's source is the temporary file the benchmark publishes from, new
        in every run, and the index rewrites every such document each time it is published."""
        documents = eval_documents()
        assert all(doc["source"].startswith(("samples/", "bench/eval/")) for doc in documents)
        assert [doc["source"] for doc in eval_documents()] == [doc["source"] for doc in documents]

    def test_reworded_questions_keep_their_documents(self) -> None:
        """Each paraphrase is a question of its own, answered by its question's documents."""
        questions = load_questions()
        reworded = reworded_questions(questions, load_paraphrases())
        assert len(reworded) == 2 * len(questions)
        by_id = {q["id"]: q for q in questions}
        for question in reworded:
            assert question["relevant"] == by_id[question["id"]]["relevant"]
            assert question["question"] != by_id[question["id"]]["question"]

    def test_a_question_without_paraphrases_adds_none(self) -> None:
        """A question nobody reworded is simply not in the reworded set."""
        questions = [{"id": "a", "question": "A?", "relevant": ["d"]}, {"id": "b", "relevant": []}]
        reworded = reworded_questions(questions, {"a": ["Aa?"]})
        assert reworded == [{"id": "a", "question": "Aa?", "relevant": ["d"]}]


class TestScore:
    def test_means_over_questions(self) -> None:
        """The scores are means over questions of each metric."""
        questions = [{"relevant": ["a"]}, {"relevant": ["b"]}]
        figures = score([["a", "x"], ["x", "b"]], questions)
        assert figures["recall@5"] == 1.0
        assert figures["mrr@10"] == pytest.approx(0.75)

    def test_sets_scored_apart_and_pooled(self) -> None:
        """Each set is scored on its own slice of the rankings, and "all" on every question."""
        sets = {"as_written": [{"relevant": ["a"]}], "reworded": [{"relevant": ["a"]}] * 2}
        rankings = {0.0: [["a"], ["x", "a"], ["x", "a"]], 1.0: [["x", "a"], ["a"], ["a"]]}
        scored = score_sets(rankings, sets)
        assert scored["as_written"]["0"]["mrr@10"] == 1.0
        assert scored["reworded"]["0"]["mrr@10"] == pytest.approx(0.5)
        assert scored["all"]["0"]["mrr@10"] == pytest.approx(2 / 3)
        assert scored["as_written"]["1"]["mrr@10"] == pytest.approx(0.5)
        assert scored["reworded"]["1"]["mrr@10"] == 1.0
        assert scored["all"]["1"]["mrr@10"] == pytest.approx(5 / 6)

    def test_best_alpha_by_mrr_then_ndcg_then_nearest_the_default(self) -> None:
        """The best MRR@10 wins; nDCG@10 breaks its ties, then nearness to the default."""

        def figures(mrr: float, ndcg: float) -> dict[str, float]:
            return {"recall@5": 1.0, "mrr@10": mrr, "ndcg@10": ndcg}

        by_alpha = {"0": figures(0.8, 0.9), "0.3": figures(0.9, 0.9), "0.7": figures(0.9, 0.9)}
        assert best_alpha(by_alpha, default=0.5) in {"0.3", "0.7"}
        assert best_alpha(by_alpha, default=0.6) == "0.7"
        assert best_alpha(by_alpha, default=0.4) == "0.3"
        by_alpha["0.3"] = figures(0.9, 0.95)
        assert best_alpha(by_alpha, default=0.6) == "0.3"
        by_alpha["0"] = figures(0.95, 0.5)
        assert best_alpha(by_alpha, default=0.6) == "0"


class TestSelection:
    def test_all_by_default(self) -> None:
        """Without --only or --skip every benchmark runs, in the fixed order."""
        assert _selection(None, None) == list(BENCHMARKS)

    def test_only_and_skip(self) -> None:
        """--only narrows the set, --skip removes from it, and the order stays fixed."""
        assert _selection("queries,ingest", None) == ["ingest", "queries"]
        assert "sweep" not in _selection(None, "sweep")

    def test_unknown_names_refused(self) -> None:
        """A misspelt benchmark stops the run before anything is measured."""
        with pytest.raises(SystemExit, match="unknown"):
            _selection("ingestion", None)


class TestIngestRepeats:
    def test_repeats_change_the_number_of_runs_and_nothing_else(self) -> None:
        """--ingest-repeats changes the number of paired runs at either scale, only that."""
        assert _scale(False, None) == FULL
        assert _scale(True, None) == QUICK
        assert _scale(False, 15).ingest_repeats == 15
        assert _scale(True, 3).ingest_repeats == 3
        assert replace(_scale(False, 15), ingest_repeats=FULL.ingest_repeats) == FULL

    def test_fewer_than_one_is_refused_before_anything_runs(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit):
            main(["--only", "ingest", "--ingest-repeats", "0"])
        assert "--ingest-repeats must be at least 1" in capsys.readouterr().err


class TestSweepPoint:
    def test_environment_of_a_point(self) -> None:
        """A point sets exactly the embedder's two batching settings."""
        assert SweepPoint(16, 20).env() == {
            "RAGSTREAM_BATCH_MAX_MESSAGES": "16",
            "RAGSTREAM_BATCH_MAX_WAIT_MS": "20",
        }

    def test_full_sweep_includes_the_default(self) -> None:
        """The full sweep measures the embedder's default batching too, as the reference point."""
        fields = EmbedderSettings.model_fields
        default = SweepPoint(
            fields["batch_max_messages"].default, fields["batch_max_wait_ms"].default
        )
        assert default in FULL_POINTS


def _latencies(p50: float | None) -> dict[str, float | None]:
    return {"count": 3.0, "p50_ms": p50, "p95_ms": p50}


_CACHES = {
    "warm_hit_rate": 1.0,
    "warm_over_cold_chunks_per_s": 2.0,
    "paraphrase_hit_rate": 0.25,
    "near_miss_false_hit_rate": 0.5,
    "retyped_exact_hit_rate": 1.0,
    "answer_cache_miss_p50_ms": 80.0,
    "answer_cache_exact_hit_p50_ms": 40.0,
    "answer_cache_semantic_hit_p50_ms": None,
    "answer_caches": {
        "miss": _latencies(80.0),
        "exact_hit": _latencies(40.0),
        "semantic_hit": _latencies(None),
        "exact_over_miss_p50": 0.5,
        "semantic_over_miss_p50": None,
        "paraphrases": {
            "asked": 4,
            "hits": 1,
            "paraphrase_hit_rate": 0.25,
            "hits_by_kind": {"exact": 0.0, "semantic": 1.0, "llm": 0.0},
            "hits_same_documents": 1,
        },
        "near_misses": {"asked": 2, "false_hits": 1, "near_miss_false_hit_rate": 0.5},
        "semantic_threshold_sweep": {
            "rows": [
                {"threshold": 0.9, "paraphrase_hit_rate": 0.5, "near_miss_false_hit_rate": 0.5},
                {"threshold": 0.95, "paraphrase_hit_rate": 0.25, "near_miss_false_hit_rate": 0.0},
                {"threshold": 1.0, "paraphrase_hit_rate": 0.0, "near_miss_false_hit_rate": 0.0},
            ]
        },
    },
}
_STREAMED = {"count": 4.0, "p50_ms": 90.0, "p95_ms": 120.0, "done_p50_ms": 300.0}
_QUERIES = {
    "concurrency": [1],
    "gateway": {"1": {"count": 0.0, "errors": 1.0}},
    "in_process": {"1": {"count": 0.0, "errors": 1.0}},
    "query_overhead_p50_ms": None,
    "query_overhead_p99_ms": None,
    "ttft_p50_ms": 90.0,
    "outside_stages": {"1": {"p50_ms": 12.0, "p95_ms": 20.0, "p99_ms": 30.0}},
    "hops_alone_p50_ms": 12.0,
    "hops_alone_p99_ms": 30.0,
    "time_to_first_token_by_concurrency": {"1": _STREAMED, "8": {"count": 0.0, "errors": 8.0}},
}


_INGEST = {
    "chunks": 360,
    "pipeline_chunks_per_s": 22.0,
    "bare_model": {"chunks_per_s": 26.0},
    "pipeline_efficiency": 0.846,
    "pipeline_efficiency_min": 0.77,
    "pipeline_efficiency_interval": {"low": 0.81, "high": 0.87, "confidence": 0.96484375},
    "time_accounts": {"cpu_besides_model_per_model_cpu": 0.19},
    "cpu_besides_model_per_model_cpu_median": 0.13,
    "model_cpu_bare_over_pipeline_median": 0.95,
    "freshness_p50_ms": 9000.0,
    "freshness_p99_ms": 17000.0,
}


class TestSummary:
    def test_cpu_besides_the_model_is_the_median_over_the_runs(self) -> None:
        """summary.json and the table carry the goal read as CPU, over every run."""
        headline = _headline({"ingest": _INGEST})
        rows = {figure: value for _, figure, value, _ in _summary_rows({"ingest": _INGEST})}
        assert headline["cpu_besides_model_per_model_cpu"] == 0.13
        assert rows["cpu_besides_model_per_model_cpu"] == 0.13
        assert rows["model CPU per chunk, bare / pipeline"] == 0.95

    def test_the_medians_interval_is_reported(self) -> None:
        """The goal is met reliably only if the interval's low end clears it: it is shown."""
        headline = _headline({"ingest": _INGEST})
        rows = {
            figure: (value, note) for _, figure, value, note in _summary_rows({"ingest": _INGEST})
        }
        assert headline["pipeline_efficiency_interval"]["low"] == 0.81
        value, note = rows["pipeline_efficiency median, low end"]
        assert value == 0.81
        assert "0.810-0.870 with 96% confidence" in note

    def test_one_run_has_no_interval_to_show(self) -> None:
        one_run = {
            **_INGEST,
            "pipeline_efficiency_interval": {"low": 0.8, "high": 0.8, "confidence": 0.0},
        }
        notes = {figure: note for _, figure, _, note in _summary_rows({"ingest": one_run})}
        assert "confidence" not in notes["pipeline_efficiency median, low end"]

    def test_headline_carries_the_cache_and_streaming_figures(self) -> None:
        """summary.json names the paraphrase hit rate, the answer-cache latencies and the TTFT."""
        headline = _headline({"caches": _CACHES, "queries": _QUERIES})
        assert headline["paraphrase_hit_rate"] == 0.25
        assert headline["near_miss_false_hit_rate"] == 0.5
        assert headline["retyped_exact_hit_rate"] == 1.0
        assert headline["answer_cache_miss_p50_ms"] == 80.0
        assert headline["answer_cache_exact_hit_p50_ms"] == 40.0
        assert headline["answer_cache_semantic_hit_p50_ms"] is None
        assert headline["ttft_p50_ms"] == 90.0
        assert (headline["hops_alone_p50_ms"], headline["hops_alone_p99_ms"]) == (12.0, 30.0)

    def test_table_rows_for_the_new_figures(self) -> None:
        """The printed table has a row per new figure, even when a level or a kind got nothing."""
        rows = {
            figure: value
            for _, figure, value, _ in _summary_rows({"caches": _CACHES, "queries": _QUERIES})
        }
        notes = {
            figure: note
            for _, figure, _, note in _summary_rows({"caches": _CACHES, "queries": _QUERIES})
        }
        assert rows["paraphrase_hit_rate"] == 0.25
        assert rows["near_miss_false_hit_rate"] == 0.5
        assert rows["retyped_exact_hit_rate"] == 1.0
        # The lowest swept threshold that served no near miss, and what it served of paraphrases.
        assert (
            "none served from 0.95, where 25% of paraphrases are"
            in notes["near_miss_false_hit_rate"]
        )
        assert rows["answer_cache_exact_hit_p50_ms"] == 40.0
        assert rows["answer_cache_semantic_hit_p50_ms"] is None
        assert rows["ttft_p50_ms"] == 90.0
        assert rows["ttft p50 ms, c=8"] is None
        assert rows["outside stages p50 ms, c=1"] == 12.0


def _retrieval(default: str, best: str) -> dict[str, object]:
    def figures(mrr: float) -> dict[str, float]:
        return {"recall@5": 1.0, "mrr@10": mrr, "ndcg@10": mrr}

    alphas = {"0": 0.8, "0.5": 0.9, "0.6": 0.95, "1": 0.85}
    return {
        "questions": 6,
        "question_sets": {"as_written": 2, "reworded": 4},
        "documents": 9,
        "alphas": {alpha: figures(mrr) for alpha, mrr in alphas.items()},
        "by_set": {
            "as_written": {alpha: figures(1.0) for alpha in alphas},
            "reworded": {alpha: figures(mrr - 0.05) for alpha, mrr in alphas.items()},
        },
        "default_alpha": default,
        "best_alpha": best,
    }


class TestRetrievalSummary:
    def test_rows_for_bm25_vectors_the_default_and_the_best(self) -> None:
        """The table shows the two pure modes, the retriever's default and the best alpha, each
        with its sets' MRR@10 beside the pooled figures."""
        rows = _summary_rows({"retrieval_quality": _retrieval("0.5", "0.6")})
        by_figure = {figure: (value, note) for _, figure, value, note in rows}
        assert set(by_figure) == {
            "alpha 0 (BM25 only)",
            "alpha 1 (vector only)",
            "alpha 0.5 (the retriever's default)",
            "alpha 0.6 (best MRR@10)",
        }
        value, note = by_figure["alpha 0.6 (best MRR@10)"]
        assert "mrr@10 0.950" in value
        assert "as written 1.000, reworded 0.900" in note
        assert "6 questions (2 as written, 4 reworded) over 9 documents" in note

    def test_a_default_that_is_best_is_one_row(self) -> None:
        """When the default is the best alpha, it is shown once, as the default."""
        rows = _summary_rows({"retrieval_quality": _retrieval("0.6", "0.6")})
        figures = [figure for _, figure, _, _ in rows]
        assert "alpha 0.6 (the retriever's default)" in figures
        assert len(figures) == 3

    def test_headline_carries_mrr_at_the_default_and_the_best(self) -> None:
        """summary.json names the best alpha and MRR@10 there and at the retriever's default."""
        headline = _headline({"retrieval_quality": _retrieval("0.5", "0.6")})
        assert headline["best_alpha"] == "0.6"
        assert headline["mrr10_at_best_alpha"] == 0.95
        assert headline["mrr10_at_default_alpha"] == 0.9


class TestStageOffsets:
    def test_seconds_from_the_first_received_of_all(self) -> None:
        """Each stage is timed from the burst's first ``received``, whichever document's."""
        stamps = [
            {
                "received": "2026-12-01T05:00:00.500000Z",
                "chunked": "2026-12-01T05:00:00.600000Z",
                "embedded": "2026-12-01T05:00:01.500000Z",
                "indexed": "2026-12-01T05:00:02Z",
            },
            {
                "received": "2026-12-01T05:00:00.250000Z",
                "chunked": "2026-12-01T05:00:00.400000Z",
                "embedded": "2026-12-01T05:00:01Z",
                "indexed": "2026-12-01T05:00:01.250000Z",
            },
        ]
        offsets = stage_offsets(stamps)
        assert [list(one) for one in offsets] == [list(STAGES)] * 2
        assert offsets[0] == pytest.approx(
            {"received": 0.25, "chunked": 0.35, "embedded": 1.25, "indexed": 1.75}
        )
        assert offsets[1] == pytest.approx(
            {"received": 0.0, "chunked": 0.15, "embedded": 0.75, "indexed": 1.0}
        )

    def test_a_document_missing_a_stage_is_left_out(self) -> None:
        """A failed document (no ``indexed``) has no place in the flow, nor does it set the
        start."""
        stamps = [
            {"received": "2026-12-01T05:00:00Z", "chunked": "2026-12-01T05:00:01Z"},
            {
                "received": "2026-12-01T05:00:02Z",
                "chunked": "2026-12-01T05:00:03Z",
                "embedded": "2026-12-01T05:00:04Z",
                "indexed": "2026-12-01T05:00:05Z",
            },
        ]
        assert stage_offsets(stamps) == [
            {"received": 0.0, "chunked": 1.0, "embedded": 2.0, "indexed": 3.0}
        ]
        assert stage_offsets(stamps[:1]) == []


class TestBacklogRows:
    def test_a_row_per_service_with_its_peak(self) -> None:
        """The table names each service's largest backlog in the median run, and when."""
        ingest_result = {
            **_INGEST,
            "backlogs": {
                "ingestor": {"stage": "chunked", "peak": 3.0, "at_s": 0.1},
                "embedder": {"stage": "embedded", "peak": 96.0, "at_s": 4.25},
            },
        }
        rows = {
            figure: (value, note)
            for name, figure, value, note in _summary_rows({"ingest": ingest_result})
            if figure.startswith("backlog")
        }
        assert set(rows) == {
            "backlog peak, ingestor (documents)",
            "backlog peak, embedder (documents)",
        }
        value, note = rows["backlog peak, embedder (documents)"]
        assert value == 96.0
        assert "4.2 s after the first document was received" in note
