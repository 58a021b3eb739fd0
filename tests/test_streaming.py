"""Streamed answers on the real stack: Server-Sent Events from the gateway, deltas over Kafka."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from ragstream_cli.stack.platform import Platform

pytestmark = pytest.mark.stack

INDEX_TIMEOUT_S = 180.0


def _wait_indexed(client: httpx.Client, doc_id: str) -> None:
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{doc_id}")
        if response.status_code == 200:
            status = response.json()
            if status["indexed"]:
                return
            assert status["stage"] != "failed", status
        time.sleep(0.25)
    raise AssertionError(f"document {doc_id} not indexed in {INDEX_TIMEOUT_S}s; last {status}")


def _read_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """Parse an SSE response as it arrives: (event, JSON data) pairs, comments skipped."""
    events: list[tuple[str, Any]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                events.append((fields["event"], json.loads(fields["data"])))
                fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value
    return events


class TestStreamedQuery:
    def test_deltas_arrive_in_order_and_make_up_the_done_answer(self, platform: Platform) -> None:
        """A streamed question gets several deltas in order, then a done event with the answer."""
        token = uuid.uuid4().hex[:8]
        station = f"Brindlecove-{token} lighthouse"
        keeper = f"Tomas Reyl{token}"
        text = (
            f"# The {station}\n\n"
            f"The keeper of the {station} is {keeper}. He has lit its lamp every night since "
            f"the winter of 2021 and records the passing ships in a blue ledger.\n\n"
            f"The {station} stands on a granite headland above the northern channel."
        )
        with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
            response = client.post(
                "/v1/documents",
                json={"title": f"The {station}", "content": text, "content_type": "text/markdown"},
            )
            assert response.status_code == 202, response.text
            _wait_indexed(client, response.json()["doc_id"])

            with client.stream(
                "POST",
                "/v1/query",
                json={"query": f"Who is the keeper of the {station}?", "stream": True},
            ) as streamed:
                assert streamed.status_code == 200
                assert streamed.headers["content-type"].startswith("text/event-stream")
                events = _read_events(streamed)

        *deltas, (kind, done) = events
        assert kind == "done", events
        assert len(deltas) >= 2
        assert all(name == "delta" for name, _ in deltas)
        assert [data["seq"] for _, data in deltas] == list(range(len(deltas)))
        assert "".join(data["delta"] for _, data in deltas) == done["answer"]
        assert keeper in done["answer"]
        assert done["citations"]
        assert done["timings"]["ttft_ms"] > 0
        assert done["timings"]["generate_ttft_ms"] > 0
