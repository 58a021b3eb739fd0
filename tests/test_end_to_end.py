"""The whole path on real parts: a document in through the gateway, a cited answer out."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ragstream_cli.stack.platform import Platform
from ragstream_common.events import DeadLetter

pytestmark = pytest.mark.stack

INDEX_TIMEOUT_S = 180.0


def _unique_fact() -> tuple[str, str, str]:
    """A fact that exists nowhere else: a made-up station and its made-up harbour master."""
    token = uuid.uuid4().hex[:8]
    station = f"Quillmarsh-{token} research station"
    person = f"Captain Orla Venn{token}"
    text = (
        f"# Field notes on the {station}\n\n"
        f"The harbour master of the {station} is {person}. She has kept the station's tide "
        f"records since the spring of 2019 and signs every logbook page in green ink.\n\n"
        f"The {station} stands on a basalt spit and is supplied by boat every second Tuesday."
    )
    return station, person, text


def _wait_indexed(client: httpx.Client, doc_id: str, timeout: float = INDEX_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{doc_id}")
        if response.status_code == 200:
            status = response.json()
            if status["indexed"]:
                return status
            assert status["stage"] != "failed", status
        time.sleep(0.25)
    raise AssertionError(f"document {doc_id} not indexed within {timeout}s; last status {status}")


@pytest.fixture(scope="module")
def indexed_fact(platform: Platform) -> dict[str, str]:
    """A document with a unique fact, published through the gateway and indexed."""
    station, person, text = _unique_fact()
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        response = client.post(
            "/v1/documents",
            json={"title": f"Notes on {station}", "content": text, "content_type": "text/markdown"},
        )
        assert response.status_code == 202, response.text
        doc_id = response.json()["doc_id"]
        status = _wait_indexed(client, doc_id)
    assert status["chunk_count"] >= 1
    return {"doc_id": doc_id, "station": station, "person": person}


class TestDocumentToAnswer:
    def test_answer_cites_the_document_holding_the_fact(
        self, platform: Platform, indexed_fact: dict[str, str]
    ) -> None:
        """A question about a fact found in one document only is answered from it, citing it."""
        with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
            response = client.post(
                "/v1/query",
                json={"query": f"Who is the harbour master of the {indexed_fact['station']}?"},
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert indexed_fact["person"] in body["answer"]
        cited = {citation["doc_id"] for citation in body["citations"]}
        assert indexed_fact["doc_id"] in cited
        first = body["citations"][0]
        assert {"doc_id", "chunk_id", "title", "snippet", "score"} <= first.keys()
        assert body["model"] not in ("", "none")
        assert body["cached"] is False
        assert {"retrieve_ms", "generate_ms", "gateway_total_ms"} <= body["timings"].keys()
        assert body["query_id"]

    def test_status_reports_indexed_with_version_and_chunks(
        self, platform: Platform, indexed_fact: dict[str, str]
    ) -> None:
        """GET /v1/documents/{id} says the document is indexed, with its version and chunk count."""
        response = httpx.get(f"{platform.gateway_url}/v1/documents/{indexed_fact['doc_id']}")
        assert response.status_code == 200
        body = response.json()
        assert body["stage"] == "indexed"
        assert body["indexed"] is True
        assert body["version"] >= 1

    def test_unknown_document_is_404(self, platform: Platform) -> None:
        """Asking for a document nobody published is a 404 with a message, not a 500."""
        response = httpx.get(f"{platform.gateway_url}/v1/documents/never-{uuid.uuid4().hex}")
        assert response.status_code == 404
        assert response.json()["detail"]

    def test_invalid_query_is_rejected_with_a_message(self, platform: Platform) -> None:
        """An empty question is a 422 that says what is wrong."""
        response = httpx.post(f"{platform.gateway_url}/v1/query", json={"query": ""})
        assert response.status_code == 422
        assert "query" in response.text


class TestTwoGatewayReplicas:
    def test_every_answer_reaches_the_replica_holding_the_request(
        self, platform: Platform, second_gateway: str, indexed_fact: dict[str, str]
    ) -> None:
        """Queries spread over two replicas each get their own answer, citing the document."""
        urls = [platform.gateway_url, second_gateway]
        question = f"Who is the harbour master of the {indexed_fact['station']}?"

        async def ask(url: str) -> httpx.Response:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await client.post("/v1/query", json={"query": question})

        async def ask_all() -> list[httpx.Response]:
            return await asyncio.gather(*(ask(urls[i % 2]) for i in range(8)))

        responses = asyncio.run(ask_all())
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
        bodies = [r.json() for r in responses]
        assert len({body["query_id"] for body in bodies}) == 8
        for body in bodies:
            assert indexed_fact["person"] in body["answer"]
            assert indexed_fact["doc_id"] in {c["doc_id"] for c in body["citations"]}


class TestDeleteAndDeadLetters:
    def test_deleted_document_is_no_longer_cited(self, platform: Platform) -> None:
        """After DELETE, the document's status says deleted and answers stop citing it."""
        station, person, text = _unique_fact()
        with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
            doc_id = client.post("/v1/documents", json={"content": text}).json()["doc_id"]
            _wait_indexed(client, doc_id)
            assert client.delete(f"/v1/documents/{doc_id}").status_code == 202
            deadline = time.monotonic() + INDEX_TIMEOUT_S
            while client.get(f"/v1/documents/{doc_id}").json()["stage"] != "deleted":
                assert time.monotonic() < deadline, "delete never completed"
                time.sleep(0.25)
            body = client.post(
                "/v1/query", json={"query": f"Who is the harbour master of the {station}?"}
            ).json()
        assert doc_id not in {c["doc_id"] for c in body["citations"]}
        assert person not in body["answer"]

    def test_malformed_event_lands_in_the_dead_letter_topic(self, platform: Platform) -> None:
        """Bytes that are no document event end in documents.dlq with the reason and the bytes."""
        marker = f"not-json-{uuid.uuid4().hex}".encode()

        async def run() -> DeadLetter:
            consumer = AIOKafkaConsumer(
                "documents.dlq",
                bootstrap_servers=platform.kafka_bootstrap,
                auto_offset_reset="latest",
                group_id=None,
            )
            await consumer.start()
            try:
                # Fix the position before producing, so the letter cannot slip past us.
                await consumer.seek_to_end()
                for partition in consumer.assignment():
                    await consumer.position(partition)
                producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
                await producer.start()
                try:
                    await producer.send_and_wait("documents", marker, key=b"bad-doc")
                finally:
                    await producer.stop()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for records in batch.values():
                        for record in records:
                            letter = DeadLetter.model_validate_json(record.value)
                            if base64.b64decode(letter.original_value_b64) == marker:
                                return letter
                raise AssertionError("no dead letter within 60 s")
            finally:
                await consumer.stop()

        letter = asyncio.run(run())
        assert letter.original_topic == "documents"
        assert letter.service == "ingestor"
        assert letter.error
