"""Driving the running pipeline: a seeded synthetic corpus, a bulk ingest, per-document freshness.

Shared by the ingest benchmark, the caches benchmark and the batching sweep. Documents go in
through the CLI's own ingest machinery (``ragstream ingest``: the platform's wire format, straight
to ``documents``), and each document's stage timestamps are read back from the gateway's status
view: its freshness is the time from ``received`` (stamped when the producer built the event) to
``indexed``, and the four stamps together say where it waited (``bench.metrics.backlogs``).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ragstream_cli.ingest.display import DisplayMode
from ragstream_cli.ingest.publisher import IngestOptions, ingest
from ragstream_cli.ingest.sources import discover

__all__ = [
    "BENCH_TENANT",
    "STAGES",
    "STAGE_SERVICES",
    "IngestMeasurement",
    "delete_documents",
    "ingest_documents",
    "restart_service",
    "run_token",
    "stage_offsets",
    "synthetic_documents",
]

# Benchmark documents live in their own tenant, so they never show up in anyone's answers.
BENCH_TENANT = "bench"
# A document's stages in the gateway's status view, in the order the pipeline passes them, and
# the service whose work (and the Kafka hop before it) lies before each of the last three.
STAGES = ("received", "chunked", "embedded", "indexed")
STAGE_SERVICES = {"chunked": "ingestor", "embedded": "embedder", "indexed": "retriever"}
# Statuses read at once from the gateway: loopback, and few enough not to disturb it.
_STATUS_CONCURRENCY = 8
# Seconds a restarted service may take to load its models and answer /healthz on a busy machine.
_START_TIMEOUT_S = 300.0

# A fixed vocabulary keeps texts readable to the tokenizer (real words, not random letters), so
# chunks cost the model what prose costs it.
# fmt: off
_WORDS = [
    "river", "harbour", "lantern", "keeper", "winter", "archive", "ferry", "signal", "tower",
    "cliff", "village", "storm", "pier", "engine", "ledger", "window", "market", "bridge",
    "canal", "orchard", "valley", "meadow", "quarry", "station", "railway", "timber", "copper",
    "granite", "marble", "velvet", "linen", "barley", "mill", "bakery", "school", "chapel",
    "garden", "museum", "gallery", "library", "theatre", "council", "record", "survey", "census",
    "letter", "journal", "diary", "north", "south", "east", "west", "morning", "evening",
    "spring", "autumn", "summer", "weekday", "weekend", "season", "builds", "repairs", "carries",
    "records", "measures", "follows", "opens", "closes", "watches", "guides", "crosses", "old",
    "new", "narrow", "wide", "quiet", "busy", "early", "late", "bright", "dark", "heavy", "light",
    "long", "short", "first", "last",
]
# fmt: on


# Each is a single word piece for all-MiniLM-L6-v2's tokenizer (checked when this was written).
# fmt: off
_TOKEN_WORDS = [
    "amber", "azure", "coral", "crimson", "golden", "indigo", "ivory", "jade", "olive",
    "scarlet", "silver", "violet", "badger", "beaver", "bison", "camel", "eagle", "falcon",
    "heron", "jaguar", "otter", "panda", "raven", "salmon", "tiger", "zebra", "basil", "cedar",
    "clover", "daisy", "fern", "hazel", "iris", "laurel", "lotus", "maple", "mint", "orchid",
    "poppy", "sage", "willow", "anchor", "barrel", "candle", "compass", "feather", "hammer",
    "helmet", "kettle", "ladder", "mirror", "needle", "pillow", "saddle", "shovel",
]
# fmt: on


def _sentence(rng: random.Random, token: str) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(9, 16))]
    # The run token makes every text new to the embedding cache, so the pipeline really embeds.
    words.insert(rng.randrange(len(words)), token)
    return " ".join(words).capitalize() + "."


def synthetic_documents(
    count: int, *, seed: int, token: str, sections: int = 3, words_per_section: int = 150
) -> list[dict[str, str]]:
    """Return ``count`` Markdown documents, the same for the same seed but for ``token``.

    Each has ``sections`` headed sections of about ``words_per_section`` words, which the
    ingestor splits into chunks of a similar size (about one per section).

    Args:
        count: How many documents.
        seed: Seeds the text, so runs compare like with like.
        token: Put into every sentence (``run_token()``): unique per run, so no chunk is an
            embedding cache hit; it should cost the same word pieces in every run.
        sections: Sections per document.
        words_per_section: Roughly how many words each section holds.
    """
    rng = random.Random(seed)
    documents = []
    for number in range(count):
        parts = [f"# Report {number} {token}"]
        for section in range(sections):
            parts.append(f"## Part {section + 1}")
            sentences: list[str] = []
            while sum(len(s.split()) for s in sentences) < words_per_section:
                sentences.append(_sentence(rng, token))
            parts.append(" ".join(sentences))
        documents.append(
            {
                "doc_id": f"bench-{token.replace(' ', '-')}-{number:05d}",
                "title": f"Report {number}",
                "content": "\n\n".join(parts),
                "content_type": "text/markdown",
            }
        )
    return documents


@dataclass
class IngestMeasurement:
    """One bulk ingest, end to end.

    Args:
        documents: Documents indexed.
        chunks: Their chunks.
        seconds: From the first publish to the last document indexed.
        freshness_ms: Per document, from ``received`` to ``indexed``.
        doc_ids: The documents, to read their chunks or delete them afterwards.
        failed: Documents that failed or timed out.
        stage_offsets: Per document that passed every stage, when it passed each
            (``stage_offsets``).
    """

    documents: int
    chunks: int
    seconds: float
    freshness_ms: list[float] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    failed: int = 0
    stage_offsets: list[dict[str, float]] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        """End-to-end throughput in chunks per second."""
        return self.chunks / self.seconds if self.seconds > 0 else 0.0


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stage_offsets(stamps: list[dict[str, str]]) -> list[dict[str, float]]:
    """Return, per document with every stage stamped, the seconds from the earliest ``received``
    of them all to each of its stages.

    Args:
        stamps: Per document, the status view's ``timestamps`` (ISO 8601, UTC) by stage.
    """
    complete = [
        {stage: _parse_time(found[stage]) for stage in STAGES}
        for found in stamps
        if all(stage in found for stage in STAGES)
    ]
    if not complete:
        return []
    start = min(times["received"] for times in complete)
    return [
        {stage: (moment - start).total_seconds() for stage, moment in times.items()}
        for times in complete
    ]


async def _stamps(gateway_url: str, doc_ids: list[str], tenant: str) -> list[dict[str, str]]:
    """Return each found document's stage timestamps from the gateway's status view."""
    gate = asyncio.Semaphore(_STATUS_CONCURRENCY)

    async def one(client: httpx.AsyncClient, doc_id: str) -> dict[str, str] | None:
        async with gate:
            response = await client.get(f"/v1/documents/{doc_id}", params={"tenant": tenant})
        if response.status_code != 200:
            return None
        found: dict[str, str] = response.json().get("timestamps", {})
        return found

    async with httpx.AsyncClient(base_url=gateway_url, timeout=10.0) as client:
        found = await asyncio.gather(*(one(client, doc_id) for doc_id in doc_ids))
    return [stamps for stamps in found if stamps is not None]


def _freshness_ms(stamps: list[dict[str, str]]) -> list[float]:
    return [
        (_parse_time(found["indexed"]) - _parse_time(found["received"])).total_seconds() * 1000
        for found in stamps
        if "received" in found and "indexed" in found
    ]


def ingest_documents(
    documents: list[dict[str, str]],
    *,
    kafka: str,
    gateway_url: str,
    tenant: str = BENCH_TENANT,
    timeout_s: float = 600.0,
    console: Console | None = None,
    around: AbstractContextManager[Any] | None = None,
) -> IngestMeasurement:
    """Publish ``documents`` to Kafka, wait until every one is indexed, and measure the run.

    Args:
        documents: What ``synthetic_documents`` returns (or any list of JSON-lines documents).
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway, for the per-document status timestamps.
        tenant: The tenant to index them under.
        timeout_s: How long to wait for the index after publishing.
        console: Where the progress goes (a bar on a terminal, lines elsewhere).
        around: Entered just before the first publish and left once the last document is
            indexed, before the freshness is read (``accounting.measure``).
    """
    console = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="ragstream-bench-") as folder:
        path = Path(folder) / "documents.jsonl"
        path.write_text("".join(json.dumps(doc) + "\n" for doc in documents), encoding="utf-8")
        options = IngestOptions(kafka=kafka, tenant=tenant, wait=True, timeout_s=timeout_s)
        mode: DisplayMode = "bar" if console.is_terminal else "lines"
        with around if around is not None else nullcontext():
            report = asyncio.run(ingest(discover([str(path)]), options, mode))
    doc_ids = [doc["doc_id"] for doc in documents]
    stamps = asyncio.run(_stamps(gateway_url, doc_ids, tenant))
    return IngestMeasurement(
        documents=report.counters.indexed,
        chunks=report.counters.chunks,
        seconds=report.total_seconds,
        freshness_ms=_freshness_ms(stamps),
        doc_ids=doc_ids,
        failed=len(report.failed) + len(report.timed_out),
        stage_offsets=stage_offsets(stamps),
    )


def delete_documents(gateway_url: str, doc_ids: list[str], tenant: str = BENCH_TENANT) -> int:
    """Ask the gateway to delete the benchmark's documents (without waiting); return how many.

    Args:
        gateway_url: The gateway.
        doc_ids: The documents.
        tenant: Their tenant.
    """
    deleted = 0
    with httpx.Client(base_url=gateway_url, timeout=10.0) as client:
        for doc_id in doc_ids:
            response = client.delete(f"/v1/documents/{doc_id}", params={"tenant": tenant})
            deleted += response.is_success
    return deleted


def run_token() -> str:
    """Return a token unique to this run: four words, each one word piece for the model.

    Whole common words keep every run's chunks the same size for the same seed (a hex token
    costs a varying number of word pieces, which moved chunk boundaries between runs); four of
    them make a repeat, and so a cache hit, one chance in millions.
    """
    rng = random.SystemRandom()
    return " ".join(rng.choice(_TOKEN_WORDS) for _ in range(4))


def restart_service(name: str, kafka: str, extra_env: dict[str, str] | None = None) -> None:
    """Restart one service of the local stack with ``extra_env`` on top of its usual settings.

    The rest of the stack keeps running. Call it again with None to restore the defaults.

    Args:
        name: The service ("embedder", "generator", ...).
        kafka: Kafka's bootstrap servers.
        extra_env: ``RAGSTREAM_*`` settings for this run of it; None: its defaults.
    """
    from ragstream_cli.stack.platform import SERVICES, service_process

    spec = next(spec for spec in SERVICES if spec.name == name)
    process = service_process(spec, kafka, extra_env)
    process.stop()
    process.start()
    process.wait_ready(_START_TIMEOUT_S)
