"""Tests for the gateway's pure logic: API models, the status view, the reply registry."""

from __future__ import annotations

import asyncio
import base64
import gc
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    Citation,
    DocumentStatus,
    QueryFilters,
    Usage,
)
from ragstream_gateway.domain import (
    DeltaOrder,
    DocumentIn,
    FiltersIn,
    PendingReplies,
    QueryIn,
    StatusBook,
    accept_correlation_id,
    answer_to_response,
    content_size,
    decoded_base64_size,
    sse_comment,
    sse_event,
    status_url,
    upload_version,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _status(
    stage: str, version: int | None = None, at: float | None = None, **fields: object
) -> DocumentStatus:
    if at is not None:
        fields["occurred_at"] = _at(at)
    return DocumentStatus.model_validate(
        {"doc_id": "doc-1", "stage": stage, "version": version} | fields
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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
        """Only the content is required; the rest defaults to the documented values."""
        document = DocumentIn(content="hello")
        assert (document.doc_id, document.title, document.resolved_content_type) == (
            None,
            "",
            "text/plain",
        )
        assert (document.content_base64, document.filename) == (None, None)
        assert (document.source, document.tags, document.tenant) == ("", [], "default")

    @pytest.mark.parametrize("content", ["", "   \n\t"])
    def test_blank_content_is_refused(self, content: str) -> None:
        """Empty or whitespace-only text, with no bytes instead, is an error naming content."""
        with pytest.raises(ValidationError, match="exactly one of content"):
            DocumentIn(content=content)

    @pytest.mark.parametrize(
        "doc_id", ["", "x" * 257, " leading", "trailing ", "new\nline", "tab\there", "bell\x07"]
    )
    def test_unaddressable_doc_ids_are_refused(self, doc_id: str) -> None:
        """A doc id is 1..256 characters, without control characters or surrounding spaces."""
        with pytest.raises(ValidationError):
            DocumentIn(doc_id=doc_id, content="x")

    @pytest.mark.parametrize("doc_id", ["guides/setup.md", "My Notes.md", "a?b#c", "x" * 256])
    def test_path_like_doc_ids_are_accepted(self, doc_id: str) -> None:
        """Ids that are file paths, with slashes and inner spaces, are valid."""
        assert DocumentIn(doc_id=doc_id, content="x").doc_id == doc_id

    def test_unknown_fields_are_refused(self) -> None:
        """A misspelt field is an error rather than silently dropped."""
        with pytest.raises(ValidationError, match="extra"):
            DocumentIn.model_validate({"content": "x", "titel": "typo"})

    def test_bad_tenant_is_refused(self) -> None:
        """Tenants are restricted to names the index accepts."""
        with pytest.raises(ValidationError):
            DocumentIn(content="x", tenant="no spaces please")

    def test_bytes_default_to_a_generic_type_and_count_decoded(self) -> None:
        """Base64 content defaults to application/octet-stream and is measured decoded."""
        document = DocumentIn(content_base64=_b64(b"%PDF-1.7 body"), filename="a.pdf")
        assert document.resolved_content_type == "application/octet-stream"
        assert document.content_bytes() == len(b"%PDF-1.7 body")
        assert document.filename == "a.pdf"

    def test_wrapped_base64_is_unwrapped(self) -> None:
        """Line breaks of wrapped base64 (as base64(1) writes it) are dropped, not refused."""
        encoded = _b64(bytes(range(120)))
        wrapped = encoded[:76] + "\n" + encoded[76:] + "\n"
        assert DocumentIn(content_base64=wrapped).content_base64 == encoded

    @pytest.mark.parametrize("encoded", ["not base64!", "abc", "YWJj=", "YW-_"])
    def test_invalid_base64_is_refused(self, encoded: str) -> None:
        """Anything but strict standard base64 is an error naming content_base64."""
        with pytest.raises(ValidationError, match="content_base64 is not valid base64"):
            DocumentIn(content_base64=encoded)

    def test_text_and_bytes_together_are_refused(self) -> None:
        """A document is either text or bytes, so sending both is an error."""
        with pytest.raises(ValidationError, match="both were given"):
            DocumentIn(content="text", content_base64=_b64(b"bytes"))

    def test_empty_bytes_count_as_no_content(self) -> None:
        """An empty content_base64 without text is refused like a blank document."""
        with pytest.raises(ValidationError, match="neither was given"):
            DocumentIn(content_base64="")

    def test_empty_bytes_beside_text_are_dropped(self) -> None:
        """An empty content_base64 next to text is published as no bytes at all."""
        assert DocumentIn(content="text", content_base64="").content_base64 is None

    def test_explicit_content_type_is_kept(self) -> None:
        """A content type given by the client wins over the defaults."""
        document = DocumentIn(content_base64=_b64(b"x"), content_type="application/pdf")
        assert document.resolved_content_type == "application/pdf"


class TestContentSize:
    def test_counts_utf8_bytes_not_characters(self) -> None:
        """The document limit is in bytes, so multi-byte characters count fully."""
        assert content_size("héllo") == 6


class TestDecodedBase64Size:
    @pytest.mark.parametrize("size", range(8))
    def test_matches_the_decoded_length(self, size: int) -> None:
        """The size computed from the encoding equals the length of the decoded bytes."""
        assert decoded_base64_size(_b64(b"\xff" * size)) == size


class TestUploadVersion:
    def test_is_the_offset_plus_one(self) -> None:
        """The first record of a partition is version 1, as the ingestor numbers it."""
        assert (upload_version(0), upload_version(41)) == (1, 42)


class TestStatusUrl:
    def test_default_tenant_is_implicit(self) -> None:
        """The default tenant's URL carries no query string."""
        assert status_url("abc") == "/v1/documents/abc"

    def test_other_tenants_and_odd_ids_are_encoded(self) -> None:
        """A non-default tenant is a query parameter and the id is percent-encoded."""
        assert status_url("a:b%", "acme") == "/v1/documents/a%3Ab%25?tenant=acme"

    def test_slashes_stay_readable(self) -> None:
        """A path-like id keeps its slashes, which the status route accepts."""
        assert status_url("guides/set up.md") == "/v1/documents/guides/set%20up.md"


class TestStatusBook:
    def test_the_collector_does_not_walk_the_documents(self) -> None:
        """The book holds every document ever ingested: once collections have seen them, a full
        collection no longer walks one object per document."""
        book = StatusBook()

        def fill(first: int, count: int) -> None:
            for n in range(first, first + count):
                for at, stage in enumerate(("received", "chunked", "embedded", "indexed")):
                    book.apply(
                        _status(stage, 1, at=at, doc_id=f"doc-{n}", doc_hash="h", chunk_count=3)
                    )
                # Late news of an earlier stage takes a path of its own.
                book.apply(_status("chunked", 1, at=9, doc_id=f"doc-{n}"))

        fill(0, 100)  # what the first events make once (validators, caches), not per document
        gc.collect()
        before = len(gc.get_objects())
        documents = 2000
        fill(100, documents)
        # A tuple is let go once a collection finds its members let go: a level per collection.
        for _ in range(3):
            gc.collect()
        assert len(book) == documents + 100
        assert len(gc.get_objects()) - before < documents // 10
        view = book.get("default", "doc-7")
        assert view is not None
        assert (view.stage, view.chunk_count, list(view.timestamps)) == (
            "indexed",
            3,
            ["received", "chunked", "embedded", "indexed"],
        )

    def test_unknown_document_is_none(self) -> None:
        """A document no event named has no status."""
        assert StatusBook().get("default", "nope") is None

    def test_latest_stage_wins_and_indexed_follows_stage(self) -> None:
        """Stages replace each other in order; indexed is true only at stage indexed."""
        book = StatusBook()
        book.apply(_status("received", at=0))
        book.apply(_status("chunked", 1, at=1))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.version) == ("chunked", False, 1)
        book.apply(_status("indexed", 1, at=2, chunk_count=4))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.chunk_count) == ("indexed", True, 4)

    def test_each_stage_of_the_version_is_timestamped(self) -> None:
        """The view keeps when the current version reached every stage, from occurred_at."""
        book = StatusBook()
        for at, stage in enumerate(("received", "chunked", "embedded", "indexed")):
            book.apply(_status(stage, 3, at=at, chunk_count=2 if at else None))
        view = book.get("default", "doc-1")
        assert view is not None
        assert view.timestamps == {
            "received": _at(0),
            "chunked": _at(1),
            "embedded": _at(2),
            "indexed": _at(3),
        }
        assert (view.updated_at, view.chunk_count) == (_at(3), 2)

    def test_a_new_version_starts_its_own_timestamps(self) -> None:
        """Stages of a replaced version do not show among the new version's timestamps."""
        book = StatusBook()
        book.apply(_status("chunked", 1, at=0))
        book.apply(_status("indexed", 1, at=1, chunk_count=5))
        book.apply(_status("chunked", 2, at=2, chunk_count=1))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version, view.chunk_count) == ("chunked", 2, 1)
        assert view.timestamps == {"chunked": _at(2)}

    def test_older_version_does_not_overwrite_newer(self) -> None:
        """A late event about version 1 leaves version 2's stage in place."""
        book = StatusBook()
        book.apply(_status("chunked", 2, at=1))
        assert book.apply(_status("indexed", 1, at=2)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version, view.indexed) == ("chunked", 2, False)

    def test_stage_never_goes_back_within_a_version(self) -> None:
        """A redelivered earlier stage of the same version leaves the later stage in place."""
        book = StatusBook()
        book.apply(_status("chunked", 1, at=0))
        book.apply(_status("indexed", 1, at=1))
        assert book.apply(_status("chunked", 1, at=5)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.timestamps["chunked"], view.updated_at) == (
            "indexed",
            _at(0),
            _at(1),
        )

    def test_received_racing_the_ingestor_only_adds_its_time(self) -> None:
        """A "received" read after "chunked" of the same version keeps the stage chunked and
        takes its place first among the timestamps."""
        book = StatusBook()
        book.apply(_status("chunked", 4, at=1))
        assert book.apply(_status("received", 4, at=0)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert view.stage == "chunked"
        assert list(view.timestamps.items()) == [("received", _at(0)), ("chunked", _at(1))]

    def test_reupload_after_indexed_shows_received_again(self) -> None:
        """A version-less "received" newer than "indexed" announces a re-upload and shows it."""
        book = StatusBook()
        book.apply(_status("indexed", 2, at=1, chunk_count=3, doc_hash="h2"))
        assert book.apply(_status("received", at=2)) is True
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.version, view.chunk_count, view.doc_hash) == (
            "received",
            False,
            None,
            None,
            None,
        )
        assert view.timestamps == {"received": _at(2)}

    def test_replaced_versions_events_do_not_displace_a_reupload(self) -> None:
        """After a re-upload is announced, older events about the replaced version lose."""
        book = StatusBook()
        book.apply(_status("indexed", 2, at=1))
        book.apply(_status("received", at=3))
        assert book.apply(_status("chunked", 1, at=4)) is False
        assert book.apply(_status("indexed", 2, at=2)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert view.stage == "received"

    def test_reuploads_version_keeps_its_received_time(self) -> None:
        """The first event naming the re-upload's version keeps the announced received time."""
        book = StatusBook()
        book.apply(_status("indexed", 2, at=1))
        book.apply(_status("received", at=3))
        assert book.apply(_status("chunked", 3, at=4, chunk_count=2)) is True
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version) == ("chunked", 3)
        assert view.timestamps == {"received": _at(3), "chunked": _at(4)}

    def test_versionless_received_older_than_the_state_is_ignored(self) -> None:
        """A "received" that happened before the latest applied event does not roll it back."""
        book = StatusBook()
        book.apply(_status("chunked", 1, at=5))
        assert book.apply(_status("received", at=4)) is False
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version) == ("chunked", 1)

    def test_versioned_received_of_a_newer_upload_applies(self) -> None:
        """A "received" naming a newer version replaces the indexed older one at once."""
        book = StatusBook()
        book.apply(_status("indexed", 1, at=1))
        assert book.apply(_status("received", 7, at=2)) is True
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.version, view.timestamps) == ("received", 7, {"received": _at(2)})

    def test_unchanged_content_is_an_ordinary_indexed(self) -> None:
        """An "indexed" for a version whose hash did not change reports that version indexed."""
        book = StatusBook()
        book.apply(_status("indexed", 1, at=0, chunk_count=3, doc_hash="h"))
        book.apply(_status("chunked", 2, at=1, chunk_count=3, doc_hash="h"))
        book.apply(_status("indexed", 2, at=2, chunk_count=3, doc_hash="h"))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.indexed, view.version, view.doc_hash, view.chunk_count) == (
            "indexed",
            True,
            2,
            "h",
            3,
        )

    def test_failure_reports_its_reason(self) -> None:
        """A failed version shows the reason it failed."""
        book = StatusBook()
        book.apply(_status("received", 1, at=0))
        book.apply(_status("failed", 1, at=1, reason="not a PDF"))
        view = book.get("default", "doc-1")
        assert view is not None
        assert (view.stage, view.reason, set(view.timestamps)) == (
            "failed",
            "not a PDF",
            {"received", "failed"},
        )

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

    def test_retrieval_options_default_to_the_retrievers(self) -> None:
        """Without alpha, filters or min_score the query leaves them to the retriever."""
        query = QueryIn(query="why?")
        assert (query.alpha, query.filters, query.min_score) == (None, None, None)

    @pytest.mark.parametrize(
        "payload",
        [
            {"alpha": -0.1},
            {"alpha": 1.5},
            {"min_score": -0.01},
            {"min_score": 1.01},
            {"filters": {"sources": "wiki"}},
            {"filters": {"colour": ["red"]}},
            {"filters": {"tags": ["t"] * 51}},
            {"filters": {"published_after": "2024-01-01T00:00:00"}},
            {
                "filters": {
                    "published_after": "2024-02-01T00:00:00Z",
                    "published_before": "2024-01-01T00:00:00Z",
                }
            },
        ],
    )
    def test_invalid_retrieval_options_are_refused(self, payload: dict[str, object]) -> None:
        """alpha and min_score are in 0..1; filters are lists, zoned dates, a forward range."""
        with pytest.raises(ValidationError):
            QueryIn.model_validate({"query": "ok", **payload})


class TestFiltersIn:
    def test_converts_to_the_event_filters(self) -> None:
        """The API filters become the QueryFilters the event carries, dates intact."""
        after = datetime(2024, 1, 1, tzinfo=UTC)
        filters = FiltersIn(sources=["wiki"], tags=["ops", "kafka"], published_after=after)

        assert filters.to_event() == QueryFilters(
            sources=["wiki"], tags=["ops", "kafka"], published_after=after
        )


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
            "supported": None,
        }
        assert response.timings == {
            "retrieve_ms": 12.0,
            "generate_ms": 30.5,
            "gateway_total_ms": 55.123,
        }
        assert (response.groundedness, response.usage, response.prompt_version) == (
            None,
            None,
            None,
        )
        assert response.attempts == []

    def test_audit_fields_are_passed_through_when_present(self) -> None:
        """Groundedness, usage, prompt version, attempts and citation support reach the body."""
        answer = _answer().model_copy(
            update={
                "groundedness": 0.75,
                "usage": Usage(prompt_tokens=120, completion_tokens=30, cost_usd=0.002),
                "prompt_version": "answer-v3",
                "attempts": ["cheap", "strong"],
                "citations": [
                    Citation(
                        n=1,
                        doc_id="d",
                        chunk_id="d:0",
                        title="T",
                        snippet="s",
                        score=0.9,
                        supported=True,
                    )
                ],
            }
        )

        response = answer_to_response(answer, gateway_total_ms=1.0)

        assert response.groundedness == 0.75
        assert response.usage is not None
        assert response.usage.model_dump() == {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "cost_usd": 0.002,
        }
        assert (response.prompt_version, response.attempts) == ("answer-v3", ["cheap", "strong"])
        assert response.citations[0].supported is True


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


def _delta(seq: int, text: str = "x", query_id: str = "q1") -> AnswerDelta:
    return AnswerDelta(query_id=query_id, reply_to="gw-a", seq=seq, delta=text)


class TestPendingStreams:
    async def test_deltas_then_answer_fill_the_queue_in_arrival_order(self) -> None:
        """A streamed query's queue gets its deltas, then its answer, which ends the entry."""
        replies = PendingReplies()
        queue = replies.expect_stream("q1")
        assert replies.deliver(_delta(0)) is True
        assert replies.resolve(_answer("q1")) is True
        assert isinstance(queue.get_nowait(), AnswerDelta)
        assert isinstance(queue.get_nowait(), AnswerCompleted)
        assert "q1" not in replies
        assert replies.deliver(_delta(1)) is False

    async def test_forget_drops_the_stream(self) -> None:
        """A stream whose client left or timed out leaves no entry behind."""
        replies = PendingReplies()
        replies.expect_stream("q1")
        replies.forget("q1")
        assert len(replies) == 0
        assert replies.resolve(_answer("q1")) is False

    async def test_a_query_id_waits_once_streamed_or_not(self) -> None:
        """A query id pending as a future cannot also be registered as a stream."""
        replies = PendingReplies()
        replies.expect("q1")
        with pytest.raises(ValueError, match="already pending"):
            replies.expect_stream("q1")


class TestDeltaOrder:
    def test_in_order_deltas_pass_straight_through(self) -> None:
        """Each in-order delta is released as it comes."""
        order = DeltaOrder()
        assert [d.seq for d in order.push(_delta(0))] == [0]
        assert [d.seq for d in order.push(_delta(1))] == [1]

    def test_early_deltas_wait_for_the_missing_one(self) -> None:
        """A delta ahead of its turn is held until the gap fills, then released in order."""
        order = DeltaOrder()
        assert order.push(_delta(2, "c")) == []
        assert order.push(_delta(1, "b")) == []
        assert order.held() == 2
        assert [(d.seq, d.delta) for d in order.push(_delta(0, "a"))] == [
            (0, "a"),
            (1, "b"),
            (2, "c"),
        ]
        assert order.held() == 0

    def test_duplicates_are_dropped(self) -> None:
        """A delta already released is not released again."""
        order = DeltaOrder()
        order.push(_delta(0))
        assert order.push(_delta(0)) == []


class TestSse:
    def test_event_is_one_json_data_line(self) -> None:
        """An SSE event names its type and carries compact JSON on one data line."""
        assert sse_event("delta", {"seq": 0, "delta": "a\nb"}) == (
            'event: delta\ndata: {"seq":0,"delta":"a\\nb"}\n\n'
        )

    def test_comment_starts_with_a_colon(self) -> None:
        """A heartbeat is a comment line, which SSE clients ignore."""
        assert sse_comment("keep-alive") == ": keep-alive\n\n"
