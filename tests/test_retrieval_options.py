"""Retrieval options end to end through the gateway: tenant isolation, filters and min_score.

Each module run writes facts that exist nowhere else (made-up names with a random token), so
the assertions hold on a platform that earlier runs have filled too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from ragstream_cli.stack.platform import Platform

pytestmark = pytest.mark.stack

INDEX_TIMEOUT_S = 180.0
QUERY_TIMEOUT_S = 60.0


def _wait_indexed(client: httpx.Client, doc_id: str, tenant: str) -> None:
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{doc_id}", params={"tenant": tenant})
        if response.status_code == 200:
            status = response.json()
            if status["indexed"]:
                return
            assert status["stage"] != "failed", status
        time.sleep(0.25)
    raise AssertionError(f"{doc_id} ({tenant}) not indexed in {INDEX_TIMEOUT_S}s; last {status}")


def _publish(client: httpx.Client, tenant: str, **document: Any) -> str:
    response = client.post("/v1/documents", json={"tenant": tenant, **document})
    assert response.status_code == 202, response.text
    doc_id: str = response.json()["doc_id"]
    _wait_indexed(client, doc_id, tenant)
    return doc_id


def _ask(platform: Platform, **body: Any) -> dict[str, Any]:
    with httpx.Client(base_url=platform.gateway_url, timeout=QUERY_TIMEOUT_S) as client:
        response = client.post("/v1/query", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _cited(answer: dict[str, Any]) -> set[str]:
    return {citation["doc_id"] for citation in answer["citations"]}


@pytest.fixture(scope="module")
def fact(platform: Platform) -> dict[str, str]:
    """A fact published in tenant "acme" only, tagged and sourced, and indexed.

    Its doc_id is also used by a document of tenant "globex" with unrelated text, so that the
    same id in two tenants is part of what the isolation tests cover.
    """
    token = uuid.uuid4().hex[:8]
    lighthouse = f"Brackenholm-{token} lighthouse"
    keeper = f"Ismay Thorne{token}"
    text = (
        f"# The {lighthouse}\n\n"
        f"The keeper of the {lighthouse} is {keeper}. She lights the lamp at dusk and logs "
        f"every passing ship in a brass-bound ledger."
    )
    tag = f"coast-{token}"
    doc_id = f"lighthouse-{token}"
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        _publish(
            client,
            "acme",
            doc_id=doc_id,
            title=f"Notes on the {lighthouse}",
            content=text,
            content_type="text/markdown",
            source="field-notes",
            tags=[tag, "maritime"],
        )
        _publish(
            client,
            "globex",
            doc_id=doc_id,
            title="Canteen menu",
            content="The canteen serves lentil soup on Mondays and apple pie on Fridays.",
        )
    return {
        "doc_id": doc_id,
        "lighthouse": lighthouse,
        "keeper": keeper,
        "text": text,
        "tag": tag,
        "question": f"Who is the keeper of the {lighthouse}?",
    }


class TestTenantIsolationThroughTheApi:
    def test_the_owning_tenant_gets_the_cited_fact(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """Asked as acme, the question is answered from acme's document, citing it."""
        answer = _ask(platform, query=fact["question"], tenant="acme")
        assert fact["doc_id"] in _cited(answer)
        assert fact["keeper"] in answer["answer"]

    def test_another_tenant_never_sees_the_fact(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """Asked as globex, even with the document's exact text, acme's fact is not used."""
        for query in (fact["question"], fact["text"][:2000]):
            answer = _ask(platform, query=query, tenant="globex")
            assert fact["keeper"] not in answer["answer"]
            assert fact["lighthouse"] not in " ".join(c["snippet"] for c in answer["citations"])

    def test_filters_on_the_owners_metadata_do_not_cross_tenants(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """globex filtering on acme's tag and source finds nothing and says it does not know."""
        answer = _ask(
            platform,
            query=fact["question"],
            tenant="globex",
            filters={"tags": [fact["tag"]], "sources": ["field-notes"]},
        )
        assert answer["citations"] == []
        assert fact["keeper"] not in answer["answer"]


class TestRetrievalOptionsThroughTheApi:
    def test_a_matching_tags_filter_keeps_the_document(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """A tags filter naming one of the document's tags still answers from it."""
        answer = _ask(
            platform, query=fact["question"], tenant="acme", filters={"tags": [fact["tag"]]}
        )
        assert _cited(answer) == {fact["doc_id"]}
        assert fact["keeper"] in answer["answer"]

    def test_a_tags_filter_matching_nothing_gives_the_does_not_know_answer(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """With a tag no document carries, nothing is retrieved and nothing is cited."""
        answer = _ask(
            platform,
            query=fact["question"],
            tenant="acme",
            filters={"tags": [f"absent-{uuid.uuid4().hex}"]},
        )
        assert answer["citations"] == []
        assert fact["keeper"] not in answer["answer"]

    def test_min_score_above_every_chunk_gives_the_does_not_know_answer(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """A cut above the best possible score leaves an empty context, as an empty filter does.

        No word of the query is in the document, so BM25 finds nothing and the best fused score
        is alpha (0.5); min_score 0.9 must cut every chunk, leaving the generator no context.
        """
        query = "Which custodian tends that seamark at nightfall?"

        cut = _ask(platform, query=query, tenant="acme", alpha=0.5, min_score=0.9)

        empty = _ask(
            platform,
            query=query,
            tenant="acme",
            filters={"tags": [f"absent-{uuid.uuid4().hex}"]},
        )

        assert cut["citations"] == []
        assert cut["answer"] == empty["answer"]
        assert fact["keeper"] not in cut["answer"]

    def test_date_filter_excluding_the_publication_gives_no_citation(
        self, platform: Platform, fact: dict[str, str]
    ) -> None:
        """A published_before bound in the past leaves out the freshly published document."""
        answer = _ask(
            platform,
            query=fact["question"],
            tenant="acme",
            filters={"published_before": "2001-01-01T00:00:00Z"},
        )
        assert fact["doc_id"] not in _cited(answer)
        assert fact["keeper"] not in answer["answer"]

    def test_invalid_options_are_422_with_a_message(self, platform: Platform) -> None:
        """An alpha outside 0..1 is refused by the gateway with a message naming it."""
        response = httpx.post(
            f"{platform.gateway_url}/v1/query", json={"query": "q", "alpha": 1.5}, timeout=30
        )
        assert response.status_code == 422
        assert "alpha" in response.json()["detail"]
