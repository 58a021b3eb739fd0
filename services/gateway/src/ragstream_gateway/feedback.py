"""Feedback on answers: what a client may send, and which model and prompt wrote each answer.

Every gateway replica reads every answer on the ``answers`` topic (each keeps the ones it waits
for), so every replica can note, from the record's headers alone, which model and prompt version
answered each query: feedback is accepted by whichever replica the client reaches, and is
counted against the model and prompt that earned it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragstream_common.events import FeedbackGiven

__all__ = ["AnswerLedger", "AnsweredBy", "FeedbackAccepted", "FeedbackIn", "feedback_event"]

MAX_COMMENT_CHARS = 2000


class FeedbackIn(BaseModel):
    """A rating of one answer (``POST /v1/feedback``)."""

    model_config = ConfigDict(extra="forbid")

    query_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    rating: int = Field(
        ge=1, le=5, description="1 (useless) to 5 (exactly right); thumbs down/up: 1 or 5."
    )
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)

    @field_validator("comment")
    @classmethod
    def _blank_comment_is_none(cls, comment: str | None) -> str | None:
        return comment.strip() or None if comment is not None else None


class FeedbackAccepted(BaseModel):
    """The answer to ``POST /v1/feedback``: recorded against this model and prompt version."""

    query_id: str
    model: str
    prompt_version: str | None


@dataclass(frozen=True, slots=True)
class AnsweredBy:
    """Who answered a query: its tenant, the model and the prompt version."""

    tenant: str
    model: str
    prompt_version: str | None


class AnswerLedger:
    """The recent answers' authors by query id, bounded in count and in age.

    Args:
        max_entries: Answers remembered; the oldest is forgotten first.
        max_age_s: How long feedback on an answer is accepted.
        clock: Seconds, monotonic (for tests).
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        max_age_s: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, AnsweredBy]] = OrderedDict()
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, query_id: str, answered_by: AnsweredBy) -> None:
        """Note who answered ``query_id``."""
        self._entries[query_id] = (self._clock(), answered_by)
        self._entries.move_to_end(query_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def lookup(self, query_id: str) -> AnsweredBy | None:
        """Return who answered ``query_id``, None if unknown or too old for feedback."""
        entry = self._entries.get(query_id)
        if entry is None:
            return None
        noted_at, answered_by = entry
        if self._clock() - noted_at > self._max_age_s:
            del self._entries[query_id]
            return None
        return answered_by


def feedback_event(body: FeedbackIn, answered_by: AnsweredBy) -> FeedbackGiven:
    """Return the event that records ``body`` against the answer's tenant, model and prompt."""
    return FeedbackGiven(
        query_id=body.query_id,
        tenant=answered_by.tenant,
        rating=body.rating,
        comment=body.comment,
        model=answered_by.model,
        prompt_version=answered_by.prompt_version,
    )
