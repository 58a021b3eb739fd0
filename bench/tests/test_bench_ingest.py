"""The ingest benchmark's order of work, with the pipeline and the model replaced by recorders."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import ragstream_embedding
from bench import ingest
from bench.pipeline import IngestMeasurement


class _Model:
    def embed(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
        return [[0.0] for _ in texts]


class _Recorder:
    """Stands in for the pipeline, the bare model and the deletes; notes each step in order."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []

    def bare(self, model: Any, texts: list[str], batch_size: int) -> dict[str, float]:
        self.steps.append(("bare", len(texts)))
        return {"chunks": len(texts), "seconds": 1.0, "chunks_per_s": float(len(texts))}

    def pipeline(
        self,
        documents: list[dict[str, str]],
        *,
        around: AbstractContextManager[Any] | None = None,
        **_: Any,
    ) -> IngestMeasurement:
        doc_ids = [doc["doc_id"] for doc in documents]
        self.steps.append(("pipeline", doc_ids))
        if around is not None:
            with around:
                pass
        # Each document a second apart, two seconds in the model: the model's backlog peaks at
        # two documents from the second document's chunking on.
        offsets = [
            {"received": n, "chunked": n + 0.5, "embedded": n + 2.5, "indexed": n + 2.6}
            for n in range(len(documents))
        ]
        return IngestMeasurement(
            documents=len(documents),
            chunks=len(documents),
            seconds=2.0,
            doc_ids=doc_ids,
            stage_offsets=offsets,
        )

    def delete(self, gateway_url: str, doc_ids: list[str]) -> int:
        self.steps.append(("delete", list(doc_ids)))
        return len(doc_ids)

    def install(self, monkeypatch: pytest.MonkeyPatch, stack: Path) -> None:
        monkeypatch.setattr(ragstream_embedding, "load_default_model", _Model)
        monkeypatch.setattr(ingest, "bare_model_chunks_per_s", self.bare)
        monkeypatch.setattr(
            ingest, "pipeline_chunk_texts", lambda docs: [d["doc_id"] for d in docs]
        )
        monkeypatch.setattr(ingest, "ingest_documents", self.pipeline)
        monkeypatch.setattr(ingest, "delete_documents", self.delete)
        monkeypatch.setattr(ingest, "stack_dir", lambda: stack)


def _run(**options: Any) -> dict[str, Any]:
    return ingest.run(
        kafka="127.0.0.1:1",
        gateway_url="http://127.0.0.1:1",
        console=Console(quiet=True),
        **options,
    )


def test_documents_are_deleted_once_after_every_measurement(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Deleting sends work through the stack, so it must not overlap a bare-model run."""
    recorder = _Recorder()
    recorder.install(monkeypatch, tmp_path)

    result = _run(documents=3, repeats=2, warm_up_documents=2)

    kinds = [kind for kind, _ in recorder.steps]
    assert kinds == ["pipeline", "bare", "pipeline", "bare", "bare", "pipeline", "bare", "delete"]
    ingested = [doc_id for kind, ids in recorder.steps if kind == "pipeline" for doc_id in ids]
    assert recorder.steps[-1] == ("delete", ingested)
    assert len(set(ingested)) == 2 + 3 + 3
    assert result["pipeline_efficiency_runs"] == [0.5, 0.5]
    assert result["pipeline_efficiency_interval"] == {"low": 0.5, "high": 0.5, "confidence": 0.5}


def test_without_cleanup_nothing_is_deleted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder = _Recorder()
    recorder.install(monkeypatch, tmp_path)

    _run(documents=1, cleanup=False)

    assert [kind for kind, _ in recorder.steps] == ["bare", "pipeline", "bare"]


def test_cpu_besides_the_model_is_the_median_over_every_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not the median run's own figure: runs ranked by efficiency need not rank by CPU."""
    recorder = _Recorder()
    recorder.install(monkeypatch, tmp_path)
    ratios = iter([0.20, 0.10, None, 0.14])
    monkeypatch.setattr(
        ingest,
        "time_accounts",
        lambda before, after, chunks: {
            "cpu_seconds": {},
            "cpu_besides_model_per_model_cpu": next(ratios),
        },
    )

    result = _run(documents=1, repeats=4, warm_up_documents=0, cleanup=False)

    assert result["cpu_besides_model_per_model_cpu_runs"] == [0.20, 0.10, 0.14]
    assert result["cpu_besides_model_per_model_cpu_median"] == pytest.approx(0.14)
    # The recorder's bare runs report no CPU: no comparison, rather than a made-up one.
    assert result["model_cpu_bare_over_pipeline_median"] is None


def test_the_median_runs_burst_is_kept_as_a_flow_and_every_run_has_its_backlogs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The JSON holds the median run's cumulative flow and each run's backlog peaks by service,
    not every document's stamps."""
    recorder = _Recorder()
    recorder.install(monkeypatch, tmp_path)

    result = _run(documents=3, repeats=2, warm_up_documents=0, cleanup=False)

    flow = result["flow"]
    assert [key for key in flow if key != "t_s"] == ["received", "chunked", "embedded", "indexed"]
    assert flow["indexed"][-1] == 3.0
    assert result["flow_services"]["embedded"] == "embedder"
    assert result["backlogs"]["embedder"] == {"stage": "embedded", "peak": 2.0, "at_s": 1.5}
    assert result["backlogs"]["ingestor"]["peak"] == 1.0
    assert "stage_offsets" not in result
    for run in result["runs"]:
        assert "stage_offsets" not in run
        assert run["backlogs"]["retriever"]["peak"] == 1.0


def test_bare_model_reports_the_cpu_it_spent() -> None:
    class _Busy:
        def embed(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
            started = time.process_time()
            while time.process_time() - started < 0.05:
                pass
            return [[0.0] for _ in texts]

    bare = ingest.bare_model_chunks_per_s(_Busy(), ["a", "b"], 16)

    assert bare["chunks"] == 2
    assert bare["cpu_seconds"] >= 0.05


def test_model_cpu_per_chunk_compares_like_with_like() -> None:
    """A chunk that costs the embedder a quarter more CPU than the bare model reads 0.8."""
    bare = {"chunks": 360, "seconds": 14.0, "chunks_per_s": 25.7, "cpu_seconds": 28.8}

    compared = ingest.model_cpu_per_chunk(36.0, 360, bare)

    assert compared["pipeline_ms"] == pytest.approx(100.0)
    assert compared["bare_ms"] == pytest.approx(80.0)
    assert compared["bare_over_pipeline"] == pytest.approx(0.8)


def test_model_cpu_per_chunk_without_counts_is_unknown() -> None:
    """No embedder reading (no pid file) or an older bare result: no figure, not a zero."""
    bare = {"chunks": 360, "seconds": 14.0, "chunks_per_s": 25.7}

    assert ingest.model_cpu_per_chunk(None, 360, bare)["bare_over_pipeline"] is None
    assert ingest.model_cpu_per_chunk(36.0, 360, bare)["bare_over_pipeline"] is None
