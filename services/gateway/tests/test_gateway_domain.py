"""Tests for the gateway's pure logic: API models, the status view, the reply registry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ragstream_common.events import AnswerCompleted, Citation, DocumentStatus
from ragstream_gateway.domain import (
    DocumentIn,
    PendingReplies,
    QueryIn,
    StatusBook,
    accept_correlation_id,
    answer_to_response,
    content_size,
    status_url,
)


def _status(stage: str, version: int | None = None, **fields: object) -> DocumentStatus:
    return DocumentStatus.model_validate(
        {"doc_id": "doc-1", "stage": stage, "version": version, **fields}
    )


def _answer(query_id: str = "q1", **fields: object) -> AnswerCompleted:
    values: dict[str, object] = {
        "query_id": query_id,
        "reply_to": "gw-a",
        "answer": "Paris [1].",
        "citations": [
            Citation(n=1, doc_id="d", chunk_id="d:0", title="T", snippet="Paris is", score=0.9)
        ],
        "model": "extractive",
        "timings": {"retrieve_ms": 12.0, "generate_ms": 30.5},
    }
    values.update(fields)
    return AnswerCompleted.model_validate(values)


class TestDocumentIn:
    def test_defaults_match_the_api(self) -> None:
        """Only content is required; the rest defaults to the documented values."""
        document = DocumentIn(content="hello")
        assert (document.doc_id, document.title, document.content_type) == (None, "", "text/plain")
        assert (document.source, document.tags, document.tenant) == ("", [], "default")

    @pytest.mark.parametrize("content", ["", "   \n\t"])
    def test_blank_content_is_refused(self, content: str) -> None:
        """Empty or whitespace-only content is a validation error naming the field."""
        with pytest.raises(ValidationError, match="content"):
            DocumentIn(content=content)

    @pytest.mark.parametrize("doc_id", ["a/b", "with space", "", "x" * 257])
    def test_doc_ids_that_break_urls_are_refused(self, doc_id: str) -> None:
        """A doc id must fit in one URL path segment."""
        with pytest.raises(ValidationError):
            DocumentIn(doc_id=doc_id, content="x")

    def test_unknown_fields_are_refused(self) -> None:
        """A misspelt field is an error rather than silently dropped."""
        with pytest.raises(ValidationError, match="extra"):
            DocumentIn.model_validate({"content": "x", "titel": "typo"})

    def test_bad_tenant_is_refused(self) -> None:
        """Tenants are restricted to names the index accepts."""
        with pytest.raises(ValidationError):
            DocumentIn(content="x", tenant="no spaces please")


class TestContentSize:
    def test_counts_utf8_bytes_not_characters(self) -> None:
        """The document limit is in bytes, so multi-byte characters count fully."""
        assert content_size("héllo") == 6


class TestStatusUrl:
    def test_default_tenant_is_implicit(self) -> None:
        """The default tenant's URL carries no query string."""
        assert status_url("abc") == "/v1/documents/abc"

    def test_other_tenants_and_odd_ids_are_encoded(self) -> None:
        """A non-default tenant is a query parameter and the id is percent-encoded."""
        assert status_url("a:b%", "acme") == "/v1/documents/a%3Ab%25?tenant=acme"


class TestStatusBook:
    def test_unknown_document_is_none(self) -> None:
        """A document no event named has no status."""
        assert StatusBook().get("default", "nope") is None

    def test_latest_stage_wins_and_indexed_follows_stage(self) -> None:
        """Stages replace each other in order; indexed is true only at stage indexed."""
        book = StatusBook()
        book.apply(_status("received"))
        book.apply(_status("chunked", 1))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.version) == ("chunked", False, 1)
        book.apply(_status("indexed", 1, chunk_count=4))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.chunk_count) == ("indexed", True, 4)

    def test_older_version_does_not_overwrite_newer(self) -> None:
        """A late event about version 1 leaves version 2's stage in place."""
        book = StatusBook()
        book.apply(_status("chunked", 2))
        assert book.apply(_status("indexed", 1)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version, view.indexed) == ("chunked", 2, False)

    def test_versionless_event_keeps_the_version_floor(self) -> None:
        """After a new upload ("received", no version), version 1's stale events still lose."""
        book = StatusBook()
        book.apply(_status("indexed", 2))
        book.apply(_status("received"))
        assert book.apply(_status("chunked", 1)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert view.stage == "received"

    def test_tenants_are_kept_apart(self) -> None:
        """The same doc id in two tenants is two documents."""
        book = StatusBook()
        book.apply(_status("indexed", 1, tenant="a"))
        book.apply(_status("failed", 1, tenant="b", reason="bad pdf"))
        view_a, view_b = book.get("a", "doc-1"), book.get("b", "doc-1")
        assert view_a is not None
        assert view_b is not None
        assert (view_a.stage, view_b.stage, view_b.reason) == ("indexed", "failed", "bad pdf")
        assert len(book) == 2

    def test_updated_at_is_the_event_time(self) -> None:
        """The view reports when the stage was reached, not when the gateway read it."""
        when = datetime(2024, 5, 1, tzinfo=UTC) - timedelta(minutes=3)
        book = StatusBook()
        book.apply(_status("embedded", 1, occurred_at=when))
        view = book.get("default", "doc-1")
        assert view is not None
        assert view.updated_at == when


class TestQueryIn:
    def test_defaults(self) -> None:
        """top_k defaults to 5 and tenant to default."""
        query = QueryIn(query="why?")
        assert (query.top_k, query.tenant) == (5, "default")

    @pytest.mark.parametrize(
        "payload",
        [
            {"query": ""},
            {"query": "  "},
            {"query": "x" * 2001},
            {"query": "ok", "top_k": 0},
            {"query": "ok", "top_k": 51},
        ],
    )
    def test_out_of_range_is_refused(self, payload: dict[str, object]) -> None:
        """Query text is 1..2000 non-blank characters and top_k is 1..50."""
        with pytest.raises(ValidationError):
            QueryIn.model_validate(payload)


class TestAnswerToResponse:
    def test_maps_fields_and_adds_gateway_total(self) -> None:
        """The response carries the answer, citations and stage timings plus the gateway's."""
        response = answer_to_response(_answer(cached=True), gateway_total_ms=55.1234)
        assert response.query_id == "q1"
        assert response.answer == "Paris [1]."
        assert response.cached is True
        assert response.citations[0].model_dump() == {
            "n": 1,
            "doc_id": "d",
            "chunk_id": "d:0",
            "title": "T",
            "snippet": "Paris is",
            "score": 0.9,
        }
        assert response.timings == {
            "retrieve_ms": 12.0,
            "generate_ms": 30.5,
            "gateway_total_ms": 55.123,
        }


class TestAcceptCorrelationId:
    @pytest.mark.parametrize("value", ["abc-123", "req.1:2_x", "A" * 128])
    def test_plain_ids_are_kept(self, value: str) -> None:
        """Short ids of safe characters are used as sent."""
        assert accept_correlation_id(value) == value

    @pytest.mark.parametrize("value", [None, "", "has space", "new\nline", "A" * 129])
    def test_unsafe_ids_are_dropped(self, value: str | None) -> None:
        """Anything that could forge log lines or bloat them is ignored."""
        assert accept_correlation_id(value) is None


class TestPendingReplies:
    async def test_answer_resolves_its_future_and_leaves_the_registry(self) -> None:
        """Resolving hands the answer over and removes the entry."""
        replies = PendingReplies()
        future = replies.expect("q1")
        assert replies.resolve(_answer("q1")) is True
        assert (await future).query_id == "q1"
        assert len(replies) == 0

    async def test_answers_nobody_waits_for_are_ignored(self) -> None:
        """An unknown or already answered query id resolves nothing."""
        replies = PendingReplies()
        replies.expect("q1")
        assert replies.resolve(_answer("other")) is False
        assert replies.resolve(_answer("q1")) is True
        assert replies.resolve(_answer("q1")) is False

    async def test_forget_removes_and_cancels(self) -> None:
        """A timed-out request leaves no entry behind."""
        replies = PendingReplies()
        future = replies.expect("q1")
        replies.forget("q1")
        assert future.cancelled()
        assert "q1" not in replies
        replies.forget("q1")  # forgetting twice is harmless

    async def test_duplicate_registration_is_refused(self) -> None:
        """Two requests cannot wait on one query id."""
        replies = PendingReplies()
        replies.expect("q1")
        with pytest.raises(ValueError, match="already pending"):
            replies.expect("q1")

    async def test_cancel_all_empties_the_registry(self) -> None:
        """At shutdown every waiter is cancelled."""
        replies = PendingReplies()
        futures = [replies.expect(f"q{i}") for i in range(3)]
        replies.cancel_all()
        await asyncio.sleep(0)
        assert all(f.cancelled() for f in futures)
        assert len(replies) == 0
