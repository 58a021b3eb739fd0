"""Observability on the real platform: metrics move, ids reach every log, secrets reach none.

One document and one query go through the running services. Their request ids are followed into
each service's log file (the document through gateway, ingestor, embedder and retriever; the
question through gateway, retriever and generator: together, every service), each service's
``/metrics`` is read before and after, and every log line written meanwhile is searched for the
e-mail address and the API key planted in the document and the question.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragstream_cli.stack.paths import component_dir
from ragstream_cli.stack.platform import SERVICES, Platform

pytestmark = pytest.mark.stack

TENANT = "observability"
PLANTED_EMAIL = "marguerite.keeper@example.org"
PLANTED_KEY = "sk-live-obs0bs0bs0bs0bs0bs0bs0bs0bs0bs0"

# Per service, counters and histograms that one document and one question must move.
MUST_MOVE: dict[str, list[str]] = {
    "gateway": [
        "ragstream_http_request_duration_seconds_count",
        "ragstream_events_published_total",
        "ragstream_answers_seen_total",
    ],
    "ingestor": ["ragstream_documents_handled_total", "ragstream_chunks_produced_total"],
    "embedder": ["ragstream_embedding_cache_misses_total", "ragstream_embedded_chunks_total"],
    "retriever": [
        "ragstream_chunks_written_total",
        "ragstream_document_freshness_seconds_count",
        "ragstream_query_batch_size_count",
        "ragstream_retrieved_chunks_count",
    ],
    "generator": ["ragstream_answers_total", "ragstream_answer_groundedness_count"],
}


def _totals(url: str) -> dict[str, float]:
    """Each sample name's sum over its label sets, from a service's /metrics."""
    totals: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _log_path(name: str, port: int) -> Path:
    return component_dir("services") / f"{name}-{port}.log"


class _LogTail:
    """What each service wrote to its log after this point."""

    def __init__(self) -> None:
        self._start = {
            spec.name: _log_path(spec.name, spec.port).stat().st_size for spec in SERVICES
        }

    def lines(self, name: str) -> list[str]:
        spec = next(spec for spec in SERVICES if spec.name == name)
        with _log_path(spec.name, spec.port).open("rb") as log:
            log.seek(self._start[name])
            return log.read().decode(errors="replace").splitlines()

    def all_lines(self) -> Iterator[tuple[str, str]]:
        for spec in SERVICES:
            for line in self.lines(spec.name):
                yield spec.name, line


def _wait_indexed(client: httpx.Client, doc_id: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{doc_id}", params={"tenant": TENANT})
        if response.status_code == 200 and response.json()["indexed"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"{doc_id} not indexed within {timeout_s} s")


def _wait_for_id_in_logs(tail: _LogTail, name: str, request_id: str, timeout_s: float) -> bool:
    # Services flush their log lines as they go, but a line may trail the event by a moment.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(request_id in line for line in tail.lines(name)):
            return True
        time.sleep(0.2)
    return False


def test_one_document_and_one_question_are_observable_end_to_end(platform: Platform) -> None:
    """Metrics move in every service, both ids reach every log on their path, no secret leaks."""
    urls = {spec.name: spec.url for spec in SERVICES}
    before = {name: _totals(url) for name, url in urls.items()}
    tail = _LogTail()
    # Document ids and filter values are logged on the way; these carry personal data and a key.
    doc_id = f"inbox/{PLANTED_EMAIL}/{uuid.uuid4().hex[:12]}"
    source = f"feed {PLANTED_KEY}"
    document_request_id = uuid.uuid4().hex
    query_request_id = uuid.uuid4().hex

    with httpx.Client(base_url=platform.gateway_url, timeout=60.0) as client:
        accepted = client.post(
            "/v1/documents",
            json={
                "doc_id": doc_id,
                "tenant": TENANT,
                "title": "Tide station duties",
                "source": source,
                "content": (
                    "# Tide station duties\n\nThe tide keeper reads the gauge at dawn and dusk. "
                    # A new text each run: the embedding cache must not serve it.
                    f"Logbook {uuid.uuid4().hex}. "
                    f"Questions go to {PLANTED_EMAIL}; the old feed used key {PLANTED_KEY}."
                ),
            },
            headers={"X-Request-ID": document_request_id},
        )
        assert accepted.status_code == 202, accepted.text
        _wait_indexed(client, doc_id)
        assert client.get(f"/v1/documents/{doc_id}", params={"tenant": TENANT}).status_code == 200
        answered = client.post(
            "/v1/query",
            json={
                "query": f"When does the tide keeper read the gauge? I am {PLANTED_EMAIL}",
                "tenant": TENANT,
                "cache": False,
                "filters": {"sources": [source]},
            },
            headers={"X-Request-ID": query_request_id},
        )
        assert answered.status_code == 200, answered.text
        assert [citation["doc_id"] for citation in answered.json()["citations"]] == [doc_id]
        client.delete(f"/v1/documents/{doc_id}", params={"tenant": TENANT})

    after = {name: _totals(url) for name, url in urls.items()}
    for name, samples in MUST_MOVE.items():
        for sample in samples:
            assert after[name].get(sample, 0.0) > before[name].get(sample, 0.0), (name, sample)

    # Each worker exports the lag of its consumer groups (refreshed every lag_refresh_s).
    for name in ("ingestor", "embedder", "retriever", "generator"):
        assert "ragstream_consumer_lag" in after[name], name

    paths = {
        document_request_id: ("gateway", "ingestor", "embedder", "retriever"),
        query_request_id: ("gateway", "retriever", "generator"),
    }
    for request_id, services in paths.items():
        for name in services:
            assert _wait_for_id_in_logs(tail, name, request_id, timeout_s=10.0), (name, request_id)

    leaks = [
        (name, line[:200])
        for name, line in tail.all_lines()
        if PLANTED_KEY in line or PLANTED_EMAIL in line
    ]
    assert leaks == []
    # Beyond the planted ones: no e-mail address and no provider key in any line at all.
    anything = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}|\bsk-[A-Za-z0-9_-]{16,}")
    assert [line[:200] for _, line in tail.all_lines() if anything.search(line)] == []
