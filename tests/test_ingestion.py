"""Ingestion on the real stack: idempotence, updates, deletes, versions, parsers, odd input.

Every test publishes documents with facts found nowhere else, through the gateway or straight to
the ``documents`` topic, and observes the outcome where users would: the gateway's status and
answers, the embedder's metrics and the objects in Weaviate.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import weaviate
from aiokafka import AIOKafkaProducer
from weaviate.classes.query import Filter

from ragstream_cli.stack.platform import Platform
from ragstream_retriever.adapters.weaviate_index import weaviate_credentials
from ragstream_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.stack

WAIT_S = 180.0


def _token() -> str:
    return uuid.uuid4().hex[:8]


def _status(client: httpx.Client, doc_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/documents/{doc_id}")
    return response.json() if response.status_code == 200 else {}


def _wait_stage(
    client: httpx.Client, doc_id: str, stages: set[str], min_version: int = 0
) -> dict[str, Any]:
    """Wait until the document reaches one of ``stages`` at ``min_version`` or later."""
    deadline = time.monotonic() + WAIT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(client, doc_id)
        if status.get("stage") in stages and (status.get("version") or 0) >= min_version:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{doc_id} never reached {stages} (v>={min_version}); last {status}")


def _publish(client: httpx.Client, **document: Any) -> str:
    response = client.post("/v1/documents", json=document)
    assert response.status_code == 202, response.text
    return str(response.json()["doc_id"])


def _ask(client: httpx.Client, question: str) -> dict[str, Any]:
    response = client.post("/v1/query", json={"query": question, "top_k": 5})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _cited(answer: dict[str, Any]) -> set[str]:
    return {citation["doc_id"] for citation in answer["citations"]}


def _embedded_chunks(platform: Platform) -> float:
    """The embedder's count of chunks its model actually embedded (cache hits excluded)."""
    text = httpx.get(f"{platform.service_urls['embedder']}/metrics", timeout=10).text
    values = re.findall(r"^ragstream_embedded_chunks_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return sum(float(value) for value in values)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def chunks_in_weaviate(platform: Platform) -> Iterator[Any]:
    """A function counting one document's chunk objects in Weaviate, read directly."""
    settings = RetrieverSettings()
    connection = weaviate.connect_to_local(
        host=settings.weaviate_host,
        port=settings.weaviate_http_port,
        grpc_port=settings.weaviate_grpc_port,
        auth_credentials=weaviate_credentials(settings),
        skip_init_checks=True,
    )
    # The collection is multi-tenant (a shard per tenant); these documents are the default tenant's.
    collection = connection.collections.get(settings.collection).with_tenant("default")

    def count(doc_id: str) -> int:
        result = collection.aggregate.over_all(
            filters=Filter.by_property("doc_id").equal(doc_id), total_count=True
        )
        return int(result.total_count or 0)

    yield count
    connection.close()


def _guide(token: str, deploy_sentence: str) -> str:
    return (
        f"# Operations guide {token}\n\n"
        f"## Backups\n\nThe backup vault of cluster {token} is named Halloran-{token}. "
        "Snapshots are taken every six hours and kept for thirty days.\n\n"
        f"## Deployments\n\n{deploy_sentence}\n\n"
        f"## On-call\n\nThe on-call rotation of cluster {token} changes every Monday at nine."
    )


class TestIdempotence:
    def test_same_document_three_times_changes_nothing_after_the_first(
        self, platform: Platform, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """Publishing identical content again embeds nothing and adds no objects to Weaviate."""
        token = _token()
        content = _guide(token, f"Deployments of {token} roll out in three waves.")
        doc_id = f"idem-{token}"
        _publish(client, doc_id=doc_id, content=content, content_type="text/markdown")
        first = _wait_stage(client, doc_id, {"indexed"})
        objects_after_first = chunks_in_weaviate(doc_id)
        embedded_after_first = _embedded_chunks(platform)
        assert objects_after_first == first["chunk_count"] >= 3

        for _ in range(2):
            _publish(client, doc_id=doc_id, content=content, content_type="text/markdown")
            status = _wait_stage(client, doc_id, {"indexed"}, min_version=first["version"] + 1)

        assert status["version"] > first["version"]
        assert chunks_in_weaviate(doc_id) == objects_after_first
        assert _embedded_chunks(platform) == embedded_after_first


class TestUpdates:
    def test_changing_one_section_re_embeds_only_it_and_retires_the_old_text(
        self, platform: Platform, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """An update re-embeds only its changed chunk; the removed sentence is not retrievable."""
        token = _token()
        doc_id = f"update-{token}"
        old = f"Deployments of {token} are approved by Marisol Quent-{token}."
        new = f"Deployments of {token} are approved by the release board."
        _publish(client, doc_id=doc_id, content=_guide(token, old), content_type="text/markdown")
        first = _wait_stage(client, doc_id, {"indexed"})
        assert (
            f"Marisol Quent-{token}"
            in _ask(client, f"Who approves deployments of {token}?")["answer"]
        )
        embedded_before = _embedded_chunks(platform)

        _publish(client, doc_id=doc_id, content=_guide(token, new), content_type="text/markdown")
        second = _wait_stage(client, doc_id, {"indexed"}, min_version=first["version"] + 1)

        assert _embedded_chunks(platform) - embedded_before == 1
        assert chunks_in_weaviate(doc_id) == second["chunk_count"] == first["chunk_count"]
        answer = _ask(client, f"Who approves deployments of {token}? Is it Marisol Quent-{token}?")
        assert f"Marisol Quent-{token}" not in answer["answer"]
        assert all(f"Quent-{token}" not in c["snippet"] for c in answer["citations"])

    def test_rapid_versions_end_at_the_last(
        self, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """v1, v2, v3 published back to back: the index ends holding v3's text only."""
        token = _token()
        doc_id = f"rapid-{token}"
        for n in (1, 2, 3):
            _publish(
                client,
                doc_id=doc_id,
                content=f"The Tessaly-{token} beacon shows colour number {n}0{n}.",
            )
        status = _wait_stage(client, doc_id, {"indexed"})
        deadline = time.monotonic() + WAIT_S
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = _ask(client, f"What colour number does the Tessaly-{token} beacon show?")
            if "303" in answer["answer"]:
                break
            time.sleep(0.3)
        assert "303" in answer["answer"], (status, answer)
        assert "101" not in answer["answer"]
        assert "202" not in answer["answer"]
        assert chunks_in_weaviate(doc_id) == 1


class TestDeletes:
    def test_delete_through_the_api_removes_every_chunk(
        self, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """DELETE /v1/documents/{id} ends with status deleted and no objects left."""
        token = _token()
        doc_id = _publish(client, content=_guide(token, "x"), content_type="text/markdown")
        _wait_stage(client, doc_id, {"indexed"})
        assert chunks_in_weaviate(doc_id) > 0
        assert client.delete(f"/v1/documents/{doc_id}").status_code == 202
        _wait_stage(client, doc_id, {"deleted"})
        assert chunks_in_weaviate(doc_id) == 0

    def test_tombstone_on_the_documents_topic_removes_every_chunk(
        self, platform: Platform, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """A Kafka tombstone (null value) keyed by the document id deletes it like the API does."""
        token = _token()
        doc_id = _publish(client, content=f"The Orrin-{token} relay sits on hill {token}.")
        _wait_stage(client, doc_id, {"indexed"})

        async def tombstone() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait("documents", None, key=doc_id.encode())
            finally:
                await producer.stop()

        asyncio.run(tombstone())
        _wait_stage(client, doc_id, {"deleted"})
        assert chunks_in_weaviate(doc_id) == 0


def _pdf_bytes(lines: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    for line in lines:
        pdf.multi_cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


class TestParsers:
    @pytest.mark.parametrize("kind", ["markdown", "html", "pdf", "json", "jsonl", "text"])
    def test_each_format_is_parsed_indexed_and_answerable(
        self, client: httpx.Client, kind: str
    ) -> None:
        """A fact inside a file of each supported format is answered, citing that document."""
        token = _token()
        fact = f"The keeper of the Varrow-{token} archive is Tobin Ashgrove-{token}."
        question = f"Who is the keeper of the Varrow-{token} archive?"
        if kind == "markdown":
            document = {"content": f"# Archive\n\n## Staff\n\n{fact}", "filename": "a.md"}
        elif kind == "text":
            document = {"content": f"Archive notes.\n\n{fact}", "content_type": "text/plain"}
        elif kind == "html":
            html = (
                "<html><head><title>Archive</title><script>var keeper = 'Decoy Person';"
                "</script><style>p { color: red }</style></head><body><nav>Home | About</nav>"
                f"<h1>Archive</h1><p>{fact}</p><footer>Copyright</footer></body></html>"
            )
            document = {"content": html, "content_type": "text/html"}
        elif kind == "pdf":
            pdf = _pdf_bytes(["Archive report", fact])
            document = {
                "content_base64": base64.b64encode(pdf).decode(),
                "content_type": "application/pdf",
                "filename": "report.pdf",
            }
        elif kind == "json":
            document = {
                "content": (
                    '[{"title": "Opening hours", "content": "Open daily."}, '
                    f'{{"title": "Staff", "content": "{fact}"}}]'
                ),
                "content_type": "application/json",
            }
        else:
            document = {
                "content": (
                    '{"name": "Hours", "text": "Open daily."}\n'
                    f'{{"name": "Staff", "text": "{fact}"}}\n'
                ),
                "filename": "records.jsonl",
                "content_type": "application/octet-stream",
            }
        doc_id = _publish(client, title=f"Archive {kind} {token}", **document)
        _wait_stage(client, doc_id, {"indexed"})
        answer = _ask(client, question)
        assert f"Tobin Ashgrove-{token}" in answer["answer"], answer
        assert doc_id in _cited(answer)
        if kind == "html":
            assert all("Decoy" not in c["snippet"] for c in answer["citations"])


class TestOddInput:
    @pytest.mark.parametrize(
        ("content", "reason"),
        [("", "no text"), ("   \n\t  \n ", "no text")],
        ids=["empty", "whitespace"],
    )
    def test_documents_without_text_fail_with_a_reason(
        self, platform: Platform, content: str, reason: str
    ) -> None:
        """An empty or blank document ends as failed with the reason; nothing is indexed."""
        doc_id = f"blank-{_token()}"

        async def publish() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
            await producer.start()
            try:
                event = {"kind": "upsert", "doc_id": doc_id, "content": content}
                await producer.send_and_wait(
                    "documents", json.dumps(event).encode(), key=doc_id.encode()
                )
            finally:
                await producer.stop()

        asyncio.run(publish())
        with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
            status = _wait_stage(client, doc_id, {"failed"})
        assert reason in status["reason"]

    def test_gateway_rejects_empty_content_with_a_message(self, client: httpx.Client) -> None:
        """The API refuses a document with no content as a 4xx that says why."""
        response = client.post("/v1/documents", json={"content": ""})
        assert 400 <= response.status_code < 500
        assert response.json()["detail"]

    def test_too_many_chunks_fails_and_indexes_nothing(
        self, client: httpx.Client, chunks_in_weaviate: Any
    ) -> None:
        """A document past the per-document chunk limit fails with a clear reason, unindexed."""
        token = _token()
        paragraphs = [
            f"Paragraph {n} of the ledger {token}: " + " ".join(f"entry{n}x{k}" for k in range(180))
            for n in range(700)
        ]
        doc_id = _publish(client, content="\n\n".join(paragraphs))
        status = _wait_stage(client, doc_id, {"failed"})
        assert "chunk" in status["reason"]
        assert chunks_in_weaviate(doc_id) == 0

    def test_invalid_utf8_is_indexed_with_replacement_characters(
        self, client: httpx.Client
    ) -> None:
        """Bytes that are not UTF-8 (Latin-1 here) are indexed, and their ASCII facts answer."""
        token = _token()
        raw = (
            f"Caf\xe9 notes. The Pellam-{token} mill grinds rye on Thursdays.".encode("latin-1")
            + b"\xff\xfe broken tail"
        )
        doc_id = _publish(
            client,
            content_base64=base64.b64encode(raw).decode(),
            content_type="text/plain",
            filename="notes.txt",
        )
        _wait_stage(client, doc_id, {"indexed"})
        answer = _ask(client, f"What does the Pellam-{token} mill grind?")
        assert "rye" in answer["answer"]
        assert doc_id in _cited(answer)

    def test_right_to_left_text_and_emoji_survive(self, client: httpx.Client) -> None:
        """Hebrew, Arabic and emoji are indexed intact and quoted back unchanged."""
        token = _token()
        sentence = f"מגדלור {token} נדלק בשנת 1871 🚨 والمنارة {token} بيضاء 🌊."
        doc_id = _publish(client, content=f"{sentence}\n\nAnother paragraph about tea.")
        _wait_stage(client, doc_id, {"indexed"})
        answer = _ask(client, f"מגדלור {token} נדלק")
        assert doc_id in _cited(answer)
        assert "🚨" in answer["answer"]
        assert "מגדלור" in answer["answer"]

    def test_oversized_document_is_refused_by_the_gateway(self, client: httpx.Client) -> None:
        """A document past the size limit is a 413 with a message, never a 500."""
        response = client.post("/v1/documents", json={"content": "x" * 6_000_000})
        assert response.status_code == 413
        assert response.json()["detail"]


def test_pdf_helper_writes_a_real_pdf() -> None:
    """The PDF fixture writer produces a file pypdf reads back with its text."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(_pdf_bytes(["hello ragstream"])))
    assert "hello ragstream" in reader.pages[0].extract_text()
