"""Tests for the local answerer's pure logic: terms, sentences, scoring and the quoted answer."""

from __future__ import annotations

import pytest

from ragstream_generator.domain import NOT_FOUND_ANSWER, Passage, cited_numbers
from ragstream_generator.extractive import (
    content_terms,
    extractive_answer,
    rank_sentences,
    split_sentences,
    stem,
)

PASSAGES = (
    Passage(
        1,
        "Index",
        "Weaviate is the shared index. The retriever is its only writer and reader.",
    ),
    Passage(
        2,
        "Kafka",
        "Keys keep every document's versions in order on one partition. "
        "The partition count is the ceiling of each consumer's replicas, so pick it for the "
        "largest scale you expect.",
    ),
    Passage(3, "Scaling", "KEDA sizes each consumer deployment from its Kafka consumer lag."),
)


class TestStem:
    @pytest.mark.parametrize(
        ("words", "expected"),
        [
            (["index", "indexes", "indexed", "indexing"], "index"),
            (["store", "stored", "storing", "stores"], "stor"),
            (["partition", "partitions", "partitioned"], "partition"),
            (["query", "queries"], "query"),
            (["run", "running"], "run"),
        ],
    )
    def test_inflections_share_a_stem(self, words: list[str], expected: str) -> None:
        """Plural, -ing, -ed forms of a word reduce to one stem."""
        assert {stem(word) for word in words} == {expected}

    def test_short_words_are_left_alone(self) -> None:
        """Words of three letters or fewer are not stripped."""
        assert [stem(w) for w in ("bus", "ids", "was")] == ["bus", "ids", "was"]

    def test_words_ending_in_ss_or_us_keep_their_s(self) -> None:
        """'process' and 'status' are not plurals."""
        assert (stem("process"), stem("status")) == ("process", "status")


class TestContentTerms:
    def test_drops_stop_words_and_case(self) -> None:
        """Only content words remain, lowercased and stemmed, in order."""
        assert content_terms("What is the ceiling of the Replicas?") == ["ceil", "replica"]

    def test_keeps_numbers_and_contractions(self) -> None:
        """Digits survive, and apostrophes do not split a word."""
        assert content_terms("Port 8080 isn't open") == ["port", "8080", "isnt", "open"]


class TestSplitSentences:
    def test_splits_on_sentence_ends_and_block_lines(self) -> None:
        """Sentences end at . ! ? before a capital; headings and list items stand alone."""
        text = "# Setup\nFirst one. Second one! Third?\n- a bullet item"
        assert split_sentences(text) == [
            "Setup",
            "First one.",
            "Second one!",
            "Third?",
            "a bullet item",
        ]

    def test_soft_wrapped_sentence_stays_whole(self) -> None:
        """A sentence wrapped over two lines of a paragraph is one sentence, not two fragments."""
        text = "The light was first lit in 1871, after storms delayed\nits construction. It shines."
        assert split_sentences(text) == [
            "The light was first lit in 1871, after storms delayed its construction.",
            "It shines.",
        ]

    def test_wrapped_list_item_continues(self) -> None:
        """A list item's continuation line belongs to the item; the next item starts anew."""
        text = "- first item that\n  wraps here\n- second item"
        assert split_sentences(text) == ["first item that wraps here", "second item"]

    def test_does_not_split_inside_numbers(self) -> None:
        """A decimal point is not a sentence end."""
        assert split_sentences("Version 1.39 is current. Upgrade soon.") == [
            "Version 1.39 is current.",
            "Upgrade soon.",
        ]


class TestRankSentences:
    def test_best_match_first(self) -> None:
        """The sentence covering most of the question's terms ranks first."""
        ranked = rank_sentences("What is the ceiling of a consumer's replicas?", PASSAGES)

        assert ranked[0].n == 2
        assert ranked[0].text.startswith("The partition count is the ceiling")
        assert ranked[0].score == pytest.approx(1.0)

    def test_rare_terms_outweigh_common_ones(self) -> None:
        """A term in many sentences counts for less than one found in a single sentence."""
        ranked = rank_sentences("consumer lag", PASSAGES)

        assert ranked[0].n == 3

    def test_duplicate_sentences_are_kept_once(self) -> None:
        """Overlapping chunks repeating a sentence do not quote it twice."""
        twice = (PASSAGES[1], Passage(4, "Kafka again", PASSAGES[1].text))
        ranked = rank_sentences("partition ceiling", twice)

        assert [s.n for s in ranked] == [2, 2]

    def test_question_of_stop_words_matches_nothing(self) -> None:
        """A question with no content words ranks no sentence."""
        assert rank_sentences("what is it?", PASSAGES) == []


class TestExtractiveAnswer:
    def test_quotes_the_answer_and_cites_its_passage(self) -> None:
        """The answer quotes the best sentence followed by its [n] marker."""
        answer = extractive_answer("What limits the number of consumer replicas?", PASSAGES)

        assert answer.startswith("The partition count is the ceiling of each consumer's replicas")
        assert cited_numbers(answer)[0] == 2

    def test_quotes_at_most_three_sentences(self) -> None:
        """However many sentences match, at most three are quoted."""
        many = tuple(Passage(n, "t", f"Kafka partitions number {n}.") for n in range(1, 8))

        assert len(cited_numbers(extractive_answer("kafka partitions", many))) == 3

    def test_weak_runners_up_are_not_quoted(self) -> None:
        """A sentence sharing one incidental word with the question is left out."""
        answer = extractive_answer("Which index does the retriever write to?", PASSAGES)

        assert cited_numbers(answer) == [1]

    def test_says_so_when_nothing_matches(self) -> None:
        """Passages sharing no content word with the question give the not-found answer."""
        assert extractive_answer("How do I bake sourdough bread?", PASSAGES) == NOT_FOUND_ANSWER

    def test_no_passages_gives_the_not_found_answer(self) -> None:
        """Without passages there is nothing to quote."""
        assert extractive_answer("anything at all?", ()) == NOT_FOUND_ANSWER

    def test_is_deterministic(self) -> None:
        """The same question over the same passages always gives the same answer."""
        question = "How does KEDA scale consumers?"
        assert len({extractive_answer(question, PASSAGES) for _ in range(5)}) == 1
