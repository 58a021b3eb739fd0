"""Where an ingest run's time went: each stack process's CPU seconds, and the model's own time.

The pipeline-efficiency ratio says how much slower the pipeline is than the bare model; this says
why. Two readings, taken just before the pipeline run and just after its last document is indexed:
the CPU time of every process of the local stack (from ``/proc``, found through the stack's pid
files) and of the benchmark itself, and the embedder's own counters of the time its model ran and
the chunks it embedded. Their differences split the gap between the model being slowed by its
neighbours (its chunks/s of model time) and the model waiting for work (its busy share).
``/proc`` is Linux only; elsewhere the CPU figures are simply absent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "Reading",
    "measure",
    "model_counters",
    "stack_pids",
    "time_accounts",
]

# The benchmark's own process, beside the stack's: it publishes and follows the documents.
BENCH_PROCESS = "bench"
_EMBEDDER = "embedder"


@dataclass
class Reading:
    """One reading of the counters.

    Args:
        cpu_seconds: CPU time (user + system) so far of each process, by name.
        model: The embedder's ``model_seconds`` and ``model_chunks`` so far (empty if unread).
        at: ``time.perf_counter()`` when taken.
    """

    cpu_seconds: dict[str, float] = field(default_factory=dict)
    model: dict[str, float] = field(default_factory=dict)
    at: float = 0.0


def model_counters(metrics_text: str) -> dict[str, float]:
    """Return the embedder's model time and embedded chunks so far, from its ``/metrics`` text.

    Args:
        metrics_text: The embedder's metrics page (Prometheus text format).
    """
    counters = {"model_seconds": 0.0, "model_chunks": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "ragstream_stage_duration_seconds_sum":
                if sample.labels.get("stage") == "embed":
                    counters["model_seconds"] += sample.value
            elif sample.name == "ragstream_embedded_chunks_total":
                counters["model_chunks"] += sample.value
    return counters


def stack_pids(stack_dir: Path) -> dict[str, int]:
    """Return the pid of each running process of the local stack, by the name of its pid file.

    Args:
        stack_dir: The stack's state directory (``ragstream_cli.stack.paths.stack_dir()``).
    """
    # The stack's own pid files: JSON with a start time, so a reused pid is not mistaken.
    from ragstream_cli.stack.processes import PidRecord

    pids = {}
    for pid_file in sorted(stack_dir.glob("*/*.pid")):
        try:
            record = PidRecord.parse(pid_file.read_text())
        except OSError:
            continue
        if record is not None and Path(f"/proc/{record.pid}").exists():
            # "embedder-8102" -> "embedder": one instance of each service runs locally.
            pids[pid_file.stem.split("-")[0]] = record.pid
    return pids


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read(pids: Mapping[str, int], embedder_url: str | None) -> Reading:
    readings = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    # A process that has just exited reads as None and is left out; one at 0 s counts.
    cpu = {name: seconds for name, seconds in readings.items() if seconds is not None}
    cpu[BENCH_PROCESS] = time.process_time()
    model: dict[str, float] = {}
    if embedder_url is not None:
        try:
            model = model_counters(httpx.get(f"{embedder_url}/metrics", timeout=5.0).text)
        except httpx.HTTPError:
            model = {}
    return Reading(cpu, model, time.perf_counter())


@contextmanager
def measure(stack_dir: Path, embedder_url: str | None, readings: list[Reading]) -> Iterator[None]:
    """Append a reading to ``readings`` on entry and another on exit.

    Args:
        stack_dir: The stack's state directory, for its pid files.
        embedder_url: The embedder's HTTP address, for its model counters (None: skip them).
        readings: Where the two readings go.
    """
    pids = stack_pids(stack_dir)
    readings.append(_read(pids, embedder_url))
    try:
        yield
    finally:
        readings.append(_read(pids, embedder_url))


def time_accounts(before: Reading, after: Reading, chunks: int) -> dict[str, Any]:
    """Return where the time between two readings went.

    Args:
        before: The reading just before the pipeline run.
        after: The reading just after its last document was indexed.
        chunks: The chunks the run embedded.
    """
    wall = after.at - before.at
    cpu = {
        name: after.cpu_seconds[name] - before.cpu_seconds[name]
        for name in sorted(before.cpu_seconds.keys() & after.cpu_seconds.keys())
    }
    model_seconds = after.model.get("model_seconds", 0.0) - before.model.get("model_seconds", 0.0)
    model_chunks = after.model.get("model_chunks", 0.0) - before.model.get("model_chunks", 0.0)
    besides = sum(seconds for name, seconds in cpu.items() if name != _EMBEDDER)
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        # Everything but the embedder, the benchmark's own process included: on a shared
        # machine, what the model's two threads had to give up.
        "cpu_seconds_besides_model": besides,
        "cores_besides_model": besides / wall if wall > 0 else None,
        # The goal read as CPU: what everything else cost per CPU-s of the embedder (its model
        # threads, and its event loop at about 3% of it).
        "cpu_besides_model_per_model_cpu": (
            besides / cpu[_EMBEDDER] if cpu.get(_EMBEDDER, 0.0) > 0 else None
        ),
        "model_seconds": model_seconds,
        "model_chunks": model_chunks,
        # Chunks per second of model time: against the bare model, how much its neighbours
        # slowed the model down.
        "model_chunks_per_s": model_chunks / model_seconds if model_seconds > 0 else None,
        # How much of the run the model was working: the rest it waited for work.
        "model_busy_share": model_seconds / wall if wall > 0 else None,
        "chunks": chunks,
    }
