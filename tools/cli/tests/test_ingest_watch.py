"""Tests for the bookkeeping of ``ragstream ingest --wait``: which documents are settled, and how."""

from __future__ import annotations

from datetime import timedelta

from ragstream_cli.ingest.watch import IndexWatch, Outcome, document_version
from ragstream_common.events import DocumentStatus, utc_now

KEY = ("default", "a.md")


def _status(stage: str, version: int | None, **fields: object) -> DocumentStatus:
    return DocumentStatus.model_validate(
        {"doc_id": "a.md", "stage": stage, "version": version, **fields}
    )


def _published(offset: int | None = 9) -> IndexWatch:
    watch = IndexWatch()
    watch.announce(KEY, "docs/a.md")
    watch.acknowledge(KEY, offset)
    return watch


class TestDocumentVersion:
    def test_is_the_offset_plus_one(self) -> None:
        """The ingestor's version of the record at offset 0 is 1."""
        assert (document_version(0), document_version(9)) == (1, 10)


class TestIndexWatch:
    def test_indexed_at_the_published_version_settles(self) -> None:
        """ "indexed" for offset + 1 settles the document with its chunk count."""
        watch = _published(offset=9)
        assert watch.has_pending
        outcome = watch.observe(_status("indexed", 10, chunk_count=4))
        assert outcome == Outcome(stage="indexed", version=10, chunk_count=4)
        assert (watch.pending, watch.has_pending) == ([], False)

    def test_an_older_version_does_not_settle(self) -> None:
        """The index finishing a previous version of the document is not our document."""
        watch = _published(offset=9)
        assert watch.observe(_status("indexed", 9, chunk_count=4)) is None
        assert watch.pending == [KEY]

    def test_a_newer_version_settles(self) -> None:
        """If someone re-published the document since, its newer version's outcome counts."""
        watch = _published(offset=9)
        assert watch.observe(_status("indexed", 12, chunk_count=1)) is not None

    def test_intermediate_stages_do_not_settle(self) -> None:
        """ "received", "chunked" and "embedded" leave the document pending."""
        watch = _published(offset=0)
        for stage in ("received", "chunked", "embedded"):
            assert watch.observe(_status(stage, 1)) is None
        assert watch.pending == [KEY]

    def test_failure_settles_with_its_reason(self) -> None:
        """A failed version settles the document and carries the reason."""
        watch = _published(offset=0)
        outcome = watch.observe(_status("failed", 1, reason="not a PDF"))
        assert outcome == Outcome(stage="failed", version=1, chunk_count=0, reason="not a PDF")

    def test_deleted_settles(self) -> None:
        """A delete published after ours also ends the wait for it."""
        watch = _published(offset=0)
        assert watch.observe(_status("deleted", 2)) is not None

    def test_status_before_the_acknowledgement_is_replayed(self) -> None:
        """A failure read before Kafka acknowledged the publish settles it at acknowledgement."""
        watch = IndexWatch()
        watch.announce(KEY, "docs/a.md")
        assert watch.observe(_status("failed", 5, reason="bad")) is None
        outcome = watch.acknowledge(KEY, 4)
        assert outcome is not None
        assert outcome.reason == "bad"

    def test_without_an_offset_only_later_statuses_settle(self) -> None:
        """With no offset to compare, a settling status must postdate the publish."""
        watch = _published(offset=None)
        before = utc_now() - timedelta(seconds=5)
        assert watch.observe(_status("indexed", 3, occurred_at=before)) is None
        assert watch.observe(_status("indexed", 3)) is not None

    def test_other_documents_and_tenants_are_ignored(self) -> None:
        """Statuses of documents this run did not publish settle nothing."""
        watch = _published(offset=0)
        assert watch.observe(_status("indexed", 1, doc_id="b.md")) is None
        assert watch.observe(_status("indexed", 1, tenant="acme")) is None
        assert watch.pending == [KEY]

    def test_announcing_again_returns_the_superseded_outcome(self) -> None:
        """Publishing a document again forgets its earlier outcome and waits for the new one."""
        watch = _published(offset=0)
        first = watch.observe(_status("indexed", 1, chunk_count=2))
        assert watch.announce(KEY, "docs/a.md") == first
        watch.acknowledge(KEY, 5)
        assert watch.observe(_status("indexed", 1)) is None
        assert (watch.pending, watch.has_pending) == ([KEY], True)

    def test_withdrawn_documents_are_not_pending(self) -> None:
        """A document whose publish failed is no longer waited for."""
        watch = IndexWatch()
        watch.announce(KEY, "docs/a.md")
        watch.withdraw(KEY)
        assert (watch.pending, watch.has_pending) == ([], False)
        assert watch.observe(_status("indexed", 1)) is None

    def test_origin_names_the_file(self) -> None:
        """A watched document is reported by the file or line it came from."""
        assert _published().origin(KEY) == "docs/a.md"

    def test_settled_documents_are_not_settled_twice(self) -> None:
        """A second settling status (a redelivery) reports no new outcome."""
        watch = _published(offset=0)
        assert watch.observe(_status("indexed", 1)) is not None
        assert watch.observe(_status("indexed", 1)) is None
