"""Which published documents are still on their way to the index, folded from their statuses.

Pure bookkeeping: the publisher tells it what it published at which version, the status consumer
hands it every ``document-status`` event, and it says when each document is settled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ragstream_common.events import DocumentStatus, utc_now

__all__ = ["DocKey", "IndexWatch", "Outcome", "document_version"]

DocKey = tuple[str, str]
"""A document's (tenant, doc id)."""

_SETTLING = frozenset({"indexed", "deleted", "failed"})


def document_version(offset: int) -> int:
    """Return the version the ingestor gives the upsert stored at ``offset`` of ``documents``.

    The ingestor numbers a document's versions by the offsets of its records (its own
    ``document_version``); the publish acknowledgement carries that offset.

    Args:
        offset: The record's offset.
    """
    return offset + 1


@dataclass(frozen=True)
class Outcome:
    """How a published document ended: indexed, deleted (a later delete won), or failed."""

    stage: str
    version: int | None
    chunk_count: int
    reason: str | None = None


@dataclass
class _Expectation:
    origin: str
    acknowledged: bool = False
    # Known once Kafka acknowledges the publish.
    version: int | None = None
    # When the publish started: the fallback test when an acknowledgement carries no offset.
    published_after: datetime = field(default_factory=utc_now)


class IndexWatch:
    """The published documents and how each ended, from the statuses read after publishing.

    A status settles a document when it reports ``indexed``, ``deleted`` or ``failed`` for the
    published version or a newer one (someone re-published it since: ours is superseded, and the
    newer version's outcome is the document's). Statuses read before the publish is acknowledged
    (a fast failure can beat the acknowledgement) are kept and replayed once the version is known.
    """

    def __init__(self) -> None:
        self._expected: dict[DocKey, _Expectation] = {}
        self._early: dict[DocKey, list[DocumentStatus]] = {}
        # Kept beside the outcomes so that "is anything pending?" costs nothing per status.
        self._unsettled: set[DocKey] = set()
        self.outcomes: dict[DocKey, Outcome] = {}

    def announce(self, key: DocKey, origin: str) -> Outcome | None:
        """Start watching ``key``, just before publishing it.

        Announcing a document again (it appears twice in one run) supersedes the earlier
        publish; the earlier one's outcome, if it had one, is returned and forgotten.

        Args:
            key: The document.
            origin: Its file or line, for messages.
        """
        self._expected[key] = _Expectation(origin)
        self._early[key] = []
        self._unsettled.add(key)
        return self.outcomes.pop(key, None)

    def acknowledge(self, key: DocKey, offset: int | None) -> Outcome | None:
        """Record where Kafka stored the publish; return the outcome if a status read meanwhile
        already settles it.

        Args:
            key: The document.
            offset: The record's offset; None if the acknowledgement had none, in which case a
                settling status must have happened after the publish started.
        """
        expectation = self._expected[key]
        expectation.acknowledged = True
        expectation.version = document_version(offset) if offset is not None else None
        outcome = None
        for status in self._early.pop(key, []):
            outcome = self.observe(status) or outcome
        return outcome

    def withdraw(self, key: DocKey) -> None:
        """Stop watching a document whose publish failed."""
        self._expected.pop(key, None)
        self._early.pop(key, None)
        self._unsettled.discard(key)

    def observe(self, status: DocumentStatus) -> Outcome | None:
        """Fold in one status; return the outcome if it settles a watched document.

        Args:
            status: Any event read from ``document-status``.
        """
        key = (status.tenant, status.doc_id)
        expectation = self._expected.get(key)
        if expectation is None or key in self.outcomes:
            return None
        if not expectation.acknowledged:
            self._early[key].append(status)
            return None
        if status.stage not in _SETTLING:
            return None
        if expectation.version is not None:
            if status.version is None or status.version < expectation.version:
                return None
        elif status.occurred_at < expectation.published_after:
            return None
        outcome = Outcome(
            stage=status.stage,
            version=status.version,
            chunk_count=status.chunk_count or 0,
            reason=status.reason,
        )
        self.outcomes[key] = outcome
        self._unsettled.discard(key)
        return outcome

    def origin(self, key: DocKey) -> str:
        """Return the file or line a watched document came from."""
        expectation = self._expected.get(key)
        return expectation.origin if expectation else f"{key[0]}/{key[1]}"

    @property
    def has_pending(self) -> bool:
        """Whether any watched document has no outcome yet."""
        return bool(self._unsettled)

    @property
    def pending(self) -> list[DocKey]:
        """The watched documents without an outcome yet, in publishing order."""
        return [key for key in self._expected if key in self._unsettled]
