"""The answer caches on the real platform: exact hits, the cited-document rule, tenants."""

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


def _wait_version(client: httpx.Client, doc_id: str, tenant: str, version: int) -> None:
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{doc_id}", params={"tenant": tenant})
        if response.status_code == 200:
            status = response.json()
            if status["indexed"] and status["version"] >= version:
                return
            assert status["stage"] != "failed", status
        time.sleep(0.25)
    raise AssertionError(f"{doc_id} ({tenant}) v{version} not indexed; last {status}")


def _publish(platform: Platform, tenant: str, doc_id: str, text: str, version: int) -> None:
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        response = client.post(
            "/v1/documents",
            json={
                "tenant": tenant,
                "doc_id": doc_id,
                "title": "Lighthouse notes",
                "content": text,
                "content_type": "text/markdown",
            },
        )
        assert response.status_code == 202, response.text
        _wait_version(client, doc_id, tenant, version)


def _ask(platform: Platform, question: str, tenant: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    with httpx.Client(base_url=platform.gateway_url, timeout=QUERY_TIMEOUT_S) as client:
        response = client.post("/v1/query", json={"query": question, "tenant": tenant})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, elapsed_ms


def _text(lighthouse: str, keeper: str) -> str:
    return (
        f"# The {lighthouse}\n\n"
        f"The keeper of the {lighthouse} is {keeper}. She lights the lamp at dusk and logs "
        f"every passing ship in a brass-bound ledger."
    )


class TestAnswerCache:
    def test_hits_and_the_cited_document_rule(self, platform: Platform) -> None:
        """Repeats hit, retyped or not; rewordings do not (by default); an edited cited document
        or another tenant never does."""
        token = uuid.uuid4().hex[:8]
        lighthouse = f"Saltmere-{token} lighthouse"
        doc_id = f"cache-{token}"
        question = f"Who is the keeper of the {lighthouse}?"
        # Both tenants hold the same text, so their prompts are identical: only the tenant
        # scoping can keep the second tenant from the first one's cached answer.
        for tenant in ("acme", "globex"):
            _publish(platform, tenant, doc_id, _text(lighthouse, f"Ismay Thorne{token}"), 1)

        first, miss_ms = _ask(platform, question, "acme")
        assert first["cached"] is False
        assert f"Ismay Thorne{token}" in first["answer"]

        second, hit_ms = _ask(platform, question, "acme")
        assert second["cached"] is True
        assert second["answer"] == first["answer"]
        assert second["citations"] == first["citations"]

        # Retyped (lower case, no question mark) over the same passages: the same exact entry.
        retyped, _ = _ask(platform, question.lower().rstrip("?"), "acme")
        assert retyped["cached"] is True
        assert retyped["answer"] == first["answer"]

        # The semantic cache is off by default: a reworded question is answered afresh.
        paraphrase, _ = _ask(platform, f"Who's the keeper of the {lighthouse}?", "acme")
        assert paraphrase["cached"] is False
        assert f"Ismay Thorne{token}" in paraphrase["answer"]

        other, _ = _ask(platform, question, "globex")
        assert other["cached"] is False

        _publish(platform, "acme", doc_id, _text(lighthouse, f"Maren Holt{token}"), 2)
        after_edit, _ = _ask(platform, question, "acme")
        assert after_edit["cached"] is False
        assert f"Maren Holt{token}" in after_edit["answer"]
        assert f"Ismay Thorne{token}" not in after_edit["answer"]
        print(f"answer cache: miss {miss_ms:.1f} ms, exact hit {hit_ms:.1f} ms")
