"""Tests for the groundedness check: sentence splitting, support scores and citation support."""

from __future__ import annotations

import pytest

from ragstream_generator.domain import NOT_FOUND_ANSWER
from ragstream_generator.groundedness import answer_sentences, assess

PASSAGES = [
    "The gateway listens on port 8000. Metrics are scraped every 15 seconds.",
    "The partition count is the ceiling of each consumer's replicas.",
]


class TestAnswerSentences:
    def test_markers_stay_with_the_sentence_before_them(self) -> None:
        """A marker after a full stop belongs to the sentence it follows."""
        assert answer_sentences("Port 8000. [1] Partitions cap replicas. [2]") == [
            "Port 8000. [1]",
            "Partitions cap replicas. [2]",
        ]

    def test_inline_markers_are_kept(self) -> None:
        """Markers before the full stop stay inside their sentence."""
        assert answer_sentences("It is 8000 [1]. Yes [1, 2].") == ["It is 8000 [1].", "Yes [1, 2]."]


class TestAssess:
    def test_quoted_answer_is_fully_grounded(self) -> None:
        """Sentences quoted from the passages they cite score 1.0, citations supported."""
        check = assess("The gateway listens on port 8000. [1]", PASSAGES)

        assert check.score == 1.0
        assert check.supported_citations == {1: True}

    def test_invented_sentence_is_not_supported(self) -> None:
        """A sentence sharing nothing with the passages scores 0."""
        check = assess("The moon is made of green cheese [1].", PASSAGES)

        assert check.score == 0.0
        assert check.supported_citations == {1: False}

    def test_half_supported_answer_scores_half(self) -> None:
        """One supported sentence of two gives 0.5."""
        check = assess("The gateway listens on port 8000 [1]. Bananas are purple [2].", PASSAGES)

        assert check.score == 0.5
        assert check.supported_citations == {1: True, 2: False}

    def test_citation_of_the_wrong_passage_is_unsupported(self) -> None:
        """A true sentence citing a passage that does not hold it is not supported."""
        check = assess("The gateway listens on port 8000 [2].", PASSAGES)

        assert check.score == 0.0
        assert check.supported_citations == {2: False}

    def test_citation_beyond_the_passages_is_unsupported(self) -> None:
        """[9] of two passages never counts as supported."""
        check = assess("The gateway listens on port 8000 [9].", PASSAGES)

        assert check.supported_citations == {9: False}
        assert check.score == 0.0

    def test_uncited_sentence_is_checked_against_every_passage(self) -> None:
        """A sentence without markers is supported when any passage holds its terms."""
        assert assess("Metrics are scraped every 15 seconds.", PASSAGES).score == 1.0

    def test_threshold_decides_partial_overlap(self) -> None:
        """A sentence with half its terms in the passage passes at 0.5 and fails at 0.6."""
        answer = "Gateway port differs wildly [1]."  # gateway, port in passage; differ, wild not

        assert assess(answer, PASSAGES, threshold=0.5).score == 1.0
        assert assess(answer, PASSAGES, threshold=0.6).score == 0.0

    @pytest.mark.parametrize("answer", [NOT_FOUND_ANSWER, "", "It is. [1]"])
    def test_answer_claiming_nothing_scores_one(self, answer: str) -> None:
        """The does-not-know sentence, or one without content words, claims nothing: 1.0."""
        check = assess(answer, PASSAGES)

        assert (check.score, check.sentences) == (1.0, 0)
