"""Tests for the answer caches' rules: keys, similarity and the cited-chunks safety rule."""

from __future__ import annotations

from ragstream_common.events import Citation, RetrievedChunk
from ragstream_generator.cache import (
    CachedAnswer,
    best_semantic_match,
    cosine,
    exact_key,
    is_servable,
    normalise_question,
)

MESSAGES = [{"role": "user", "content": "[1] Kafka partitions bound consumers."}]


def _chunk(chunk_id: str) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=chunk_id, doc_id=chunk_id.split("#")[0], title="T", text="x", position=0, score=0.9
    )


def _entry(
    *cited: str, vector: list[float] | None = None, answer: str = "A [1].", top: str = "a#1"
) -> CachedAnswer:
    citations = [
        Citation(n=i + 1, doc_id=c.split("#")[0], chunk_id=c, title="T", snippet="x", score=0.9)
        for i, c in enumerate(cited)
    ]
    return CachedAnswer(
        answer=answer,
        citations=citations,
        model="fake/model",
        query_vector=vector,
        top_chunk_id=top,
    )


class TestExactKey:
    def test_same_inputs_same_key(self) -> None:
        """The same tenant, group, prompt version and messages give the same key."""
        assert exact_key("acme", "answerer", "v1", MESSAGES) == exact_key(
            "acme", "answerer", "v1", [dict(m) for m in MESSAGES]
        )

    def test_tenant_changes_key(self) -> None:
        """Two tenants asking with the same prompt never share an exact entry."""
        assert exact_key("acme", "answerer", "v1", MESSAGES) != exact_key(
            "globex", "answerer", "v1", MESSAGES
        )

    def test_passage_text_changes_key(self) -> None:
        """A changed retrieved passage changes the prompt and so the key."""
        changed = [{"role": "user", "content": "[1] Kafka partitions cap consumers."}]
        assert exact_key("acme", "answerer", "v1", MESSAGES) != exact_key(
            "acme", "answerer", "v1", changed
        )

    def test_prompt_version_changes_key(self) -> None:
        """A new prompt template does not reuse answers written with the old one."""
        assert exact_key("acme", "answerer", "v1", MESSAGES) != exact_key(
            "acme", "answerer", "v2", MESSAGES
        )


class TestNormaliseQuestion:
    def test_retyped_question_is_the_same(self) -> None:
        """Case, runs of whitespace, Unicode forms and closing punctuation do not count."""
        asked = "When was the Kessock Point lighthouse first lit?"
        for retyped in (
            "when was the kessock point lighthouse first lit",
            "  When  was the Kessock\tPoint lighthouse first lit ??",
            "WHEN WAS THE KESSOCK POINT LIGHTHOUSE FIRST LIT.",
            "When was the Kessock Point lighthouse first lit\uff1f",  # a full-width question mark
        ):
            assert normalise_question(retyped) == normalise_question(asked), retyped

    def test_a_changed_word_or_inner_punctuation_is_another_question(self) -> None:
        """Every word, and punctuation inside the question, still counts."""
        asked = normalise_question("Does Kafka guarantee ordering across partitions?")
        assert normalise_question("Does Kafka guarantee ordering within partitions?") != asked
        assert normalise_question("Does Kafka guarantee ordering across partition?") != asked
        assert normalise_question("Is 3.5 allowed?") != normalise_question("Is 35 allowed?")


class TestCosine:
    def test_parallel_vectors(self) -> None:
        """Vectors pointing the same way score 1."""
        assert abs(cosine([1.0, 2.0], [2.0, 4.0]) - 1.0) < 1e-9

    def test_orthogonal_vectors(self) -> None:
        """Orthogonal vectors score 0."""
        assert cosine([1.0, 0.0], [0.0, 1.0]) == 0.0

    def test_mismatched_or_zero_vectors(self) -> None:
        """Vectors of different sizes, or a zero vector, score 0 rather than raising."""
        assert cosine([1.0], [1.0, 0.0]) == 0.0
        assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


class TestIsServable:
    def test_all_cited_chunks_retrieved(self) -> None:
        """An answer whose cited chunks are all retrieved now may be served."""
        assert is_servable(_entry("a#1", "b#2"), [_chunk("a#1"), _chunk("b#2"), _chunk("c#3")])

    def test_changed_cited_chunk(self) -> None:
        """An answer citing a chunk whose text changed (so its id did) is not served."""
        assert not is_servable(_entry("a#1", "b#2"), [_chunk("a#1"), _chunk("b#9")])

    def test_deleted_cited_document(self) -> None:
        """An answer citing a document no longer retrieved is not served."""
        assert not is_servable(_entry("a#1"), [_chunk("c#3")])

    def test_no_citations(self) -> None:
        """An answer citing nothing is never served: nothing ties it to the documents."""
        assert not is_servable(_entry(), [_chunk("a#1")])


class TestBestSemanticMatch:
    def test_similar_question_is_served(self) -> None:
        """A question above the threshold with its cited chunks retrieved is a hit."""
        entry = _entry("a#1", vector=[1.0, 0.1])
        assert best_semantic_match([entry], [1.0, 0.12], [_chunk("a#1")], 0.92) == entry

    def test_below_threshold_misses(self) -> None:
        """A question less similar than the threshold is a miss."""
        entry = _entry("a#1", vector=[1.0, 0.0])
        assert best_semantic_match([entry], [0.5, 1.0], [_chunk("a#1")], 0.92) is None

    def test_cited_chunk_missing_misses(self) -> None:
        """The most similar question is refused when a chunk it cites is not retrieved now."""
        entry = _entry("a#1", vector=[1.0, 0.0], top="a#2")
        assert best_semantic_match([entry], [1.0, 0.0], [_chunk("a#2")], 0.92) is None

    def test_most_similar_servable_wins(self) -> None:
        """Among servable entries the most similar is chosen; an unservable closer one is skipped."""
        closest_stale = _entry("gone#1", vector=[1.0, 0.0], answer="stale")
        close = _entry("a#1", vector=[1.0, 0.2], answer="close")
        closer = _entry("a#1", vector=[1.0, 0.05], answer="closer")
        chunks = [_chunk("a#1")]
        found = best_semantic_match([closest_stale, close, closer], [1.0, 0.0], chunks, 0.9)
        assert found == closer

    def test_entries_without_vectors_skipped(self) -> None:
        """Entries stored without a query vector never match semantically."""
        assert best_semantic_match([_entry("a#1")], [1.0], [_chunk("a#1")], 0.0) is None

    def test_other_top_chunk_misses(self) -> None:
        """A near-identical question for which retrieval ranks another passage first misses."""
        entry = _entry("station#8", "station#9", vector=[1.0, 0.0], top="station#8")
        chunks = [_chunk("station#9"), _chunk("station#8")]
        assert best_semantic_match([entry], [1.0, 0.0], chunks, 0.92) is None
