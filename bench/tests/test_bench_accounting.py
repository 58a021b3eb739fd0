"""The ingest benchmark's time accounts: pure differences, and the readings they come from."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from bench.accounting import Reading, measure, model_counters, stack_pids, time_accounts

_METRICS = """\
# HELP ragstream_stage_duration_seconds Time spent in each stage.
# TYPE ragstream_stage_duration_seconds histogram
ragstream_stage_duration_seconds_bucket{service="embedder",stage="embed",le="+Inf"} 3.0
ragstream_stage_duration_seconds_count{service="embedder",stage="embed"} 3.0
ragstream_stage_duration_seconds_sum{service="embedder",stage="embed"} 2.5
ragstream_stage_duration_seconds_count{service="embedder",stage="model_load"} 1.0
ragstream_stage_duration_seconds_sum{service="embedder",stage="model_load"} 7.0
# HELP ragstream_embedded_chunks_total Chunk texts the model embedded.
# TYPE ragstream_embedded_chunks_total counter
ragstream_embedded_chunks_total{service="embedder"} 60.0
"""


def test_model_counters_take_the_embed_stage_only() -> None:
    assert model_counters(_METRICS) == {"model_seconds": 2.5, "model_chunks": 60.0}


def test_model_counters_of_a_fresh_embedder_are_zero() -> None:
    assert model_counters("") == {"model_seconds": 0.0, "model_chunks": 0.0}


def test_time_accounts_split_the_run() -> None:
    before = Reading(
        {"embedder": 10.0, "kafka": 5.0, "bench": 1.0},
        {"model_seconds": 2.0, "model_chunks": 40.0},
        at=100.0,
    )
    after = Reading(
        {"embedder": 46.0, "kafka": 7.0, "bench": 2.0, "late": 9.0},
        {"model_seconds": 20.0, "model_chunks": 400.0},
        at=120.0,
    )

    accounts = time_accounts(before, after, chunks=360)

    assert accounts["wall_seconds"] == 20.0
    # A process that appeared in between is left out rather than counted from zero.
    assert accounts["cpu_seconds"] == {"bench": 1.0, "embedder": 36.0, "kafka": 2.0}
    assert accounts["cpu_seconds_besides_model"] == 3.0
    assert accounts["cores_besides_model"] == pytest.approx(0.15)
    assert accounts["cpu_besides_model_per_model_cpu"] == pytest.approx(3.0 / 36.0)
    assert accounts["model_chunks_per_s"] == 20.0
    assert accounts["model_busy_share"] == pytest.approx(0.9)


def test_time_accounts_without_model_counters_have_no_model_rate() -> None:
    accounts = time_accounts(Reading(at=1.0), Reading(at=2.0), chunks=0)

    assert (accounts["model_chunks_per_s"], accounts["model_busy_share"]) == (None, 0.0)
    assert accounts["cpu_besides_model_per_model_cpu"] is None


def test_stack_pids_read_the_pid_files_of_running_processes(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "kafka").mkdir()
    own = {"pid": os.getpid(), "start_ticks": "0", "log_offset": 0, "started_at": 0.0, "argv": []}
    (tmp_path / "services" / "embedder-8102.pid").write_text(json.dumps(own))
    (tmp_path / "kafka" / "kafka.pid").write_text("999999999")

    assert stack_pids(tmp_path) == {"embedder": os.getpid()}


def test_measure_reads_cpu_time_before_and_after(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "ingestor-8101.pid").write_text(str(os.getpid()))
    readings: list[Reading] = []

    with measure(tmp_path, None, readings):
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass

    before, after = readings
    accounts = time_accounts(before, after, chunks=0)
    assert accounts["cpu_seconds"]["bench"] >= 0.05
    assert accounts["cpu_seconds"]["ingestor"] > 0
    assert before.model == after.model == {}


def test_an_idle_process_counts_at_zero_and_a_gone_one_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    (tmp_path / "kafka").mkdir()
    idle = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "redis" / "redis.pid").write_text(str(idle.pid))
        (tmp_path / "kafka" / "kafka.pid").write_text("999999999")
        readings: list[Reading] = []

        with measure(tmp_path, None, readings):
            pass

        assert readings[-1].cpu_seconds["redis"] == 0.0
        assert "kafka" not in readings[-1].cpu_seconds
    finally:
        idle.kill()
        idle.wait()
