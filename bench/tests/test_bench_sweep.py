"""The batching sweep's order of work and its arithmetic, the stack replaced by recorders."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from bench import sweep
from bench.pipeline import IngestMeasurement
from bench.sweep import SweepPoint, point_row, sweep_order

_A, _B, _C = SweepPoint(1, 0), SweepPoint(16, 20), SweepPoint(64, 20)


def _measured(chunks_per_s: float, freshness_ms: list[float]) -> IngestMeasurement:
    return IngestMeasurement(
        documents=len(freshness_ms),
        chunks=int(chunks_per_s * 2),
        seconds=2.0,
        freshness_ms=freshness_ms,
    )


class TestSweepOrder:
    def test_each_round_reverses_the_one_before(self) -> None:
        """A B C, C B A, A B C: a machine speeding up or slowing down meets every point alike."""
        assert sweep_order([_A, _B, _C], 3) == [_A, _B, _C, _C, _B, _A, _A, _B, _C]

    def test_one_round_is_the_points_as_given(self) -> None:
        assert sweep_order([_A, _B], 1) == [_A, _B]


class TestPointRow:
    def test_median_rate_and_freshness_over_every_round(self) -> None:
        """chunks/s is the median of the rounds (kept beside it); freshness pools documents."""
        row = point_row(_B, [_measured(10.0, [100.0, 300.0]), _measured(20.0, [200.0])])
        assert row["label"] == "16 msgs / 20 ms"
        assert row["chunks_per_s_rounds"] == [10.0, 20.0]
        assert row["chunks_per_s"] == pytest.approx(15.0)
        assert row["freshness_p50_ms"] == pytest.approx(200.0)
        assert row["chunks"] == 60


class _Stack:
    """Stands in for the restarts, the ingests and the deletes; notes each step in order."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.steps: list[tuple[str, Any]] = []
        self.fail_at = fail_at

    def restart(self, name: str, kafka: str, env: dict[str, str] | None = None) -> None:
        self.steps.append(("restart", (env or {}).get("RAGSTREAM_BATCH_MAX_MESSAGES", "default")))

    def ingest(self, documents: list[dict[str, str]], **_: Any) -> IngestMeasurement:
        ingests = sum(kind == "ingest" for kind, _ in self.steps)
        if self.fail_at is not None and ingests == self.fail_at:
            raise RuntimeError("the stack went away")
        self.steps.append(("ingest", len(documents)))
        return IngestMeasurement(
            documents=len(documents),
            chunks=3 * len(documents),
            seconds=1.0 + ingests,
            freshness_ms=[1.0] * len(documents),
            doc_ids=[doc["doc_id"] for doc in documents],
        )

    def delete(self, gateway_url: str, doc_ids: list[str]) -> int:
        self.steps.append(("delete", len(doc_ids)))
        return len(doc_ids)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sweep, "restart_service", self.restart)
        monkeypatch.setattr(sweep, "ingest_documents", self.ingest)
        monkeypatch.setattr(sweep, "delete_documents", self.delete)


def _run(**options: Any) -> dict[str, Any]:
    return sweep.run(
        kafka="127.0.0.1:1",
        gateway_url="http://127.0.0.1:1",
        points=[_A, _C],
        documents=5,
        console=Console(quiet=True),
        **options,
    )


def test_each_measurement_follows_a_restart_and_an_unmeasured_warm_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restart, warm-up burst, measured burst, for each point of each round in sweep order;
    the embedder gets its defaults back at the end."""
    stack = _Stack()
    stack.install(monkeypatch)

    result = _run(rounds=2, warm_up_documents=2)

    restarts = [value for kind, value in stack.steps if kind == "restart"]
    assert restarts == ["1", "64", "64", "1", "default"]
    ingests = [value for kind, value in stack.steps if kind == "ingest"]
    assert ingests == [2, 5] * 4
    assert [row["label"] for row in result["points"]] == [_A.label, _C.label]
    # Only the measured bursts count: two rounds of five documents per point.
    assert [len(row["chunks_per_s_rounds"]) for row in result["points"]] == [2, 2]
    assert [row["chunks"] for row in result["points"]] == [30, 30]


def test_the_defaults_come_back_when_a_burst_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _Stack(fail_at=1)
    stack.install(monkeypatch)

    with pytest.raises(RuntimeError):
        _run(rounds=1, warm_up_documents=2)

    assert stack.steps[-1] == ("restart", "default")
