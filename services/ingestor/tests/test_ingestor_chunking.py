"""Tests for token-bounded chunking: packing, splitting, overlap, budgets (fake and real tokenizer)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from ragstream_common.chunk_text import embedding_text
from ragstream_ingestor.chunking import (
    ChunkDraft,
    ChunkingPolicy,
    TokenCounter,
    chunk_sections,
    fit_heading_path,
    fit_title,
    split_sentences,
)
from ragstream_ingestor.errors import DocumentRejectedError
from ragstream_ingestor.parsing import Section

# With the fake counter (one token per word, plus two) and no title or headings, a chunk's text
# may hold 38 words.
POLICY = ChunkingPolicy(max_tokens=40, overlap_tokens=8)
NO_OVERLAP = ChunkingPolicy(max_tokens=40, overlap_tokens=0)


def _words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def _texts(
    paragraphs: Sequence[str], counter: TokenCounter, policy: ChunkingPolicy = POLICY
) -> list[str]:
    drafts = chunk_sections("", [Section((), tuple(paragraphs))], counter, policy)
    return [draft.text for draft in drafts]


class TestChunkingPolicy:
    def test_overlap_must_stay_below_half_the_budget(self) -> None:
        """An overlap that would leave a chunk mostly repeated text is refused."""
        with pytest.raises(ValueError, match="overlap_tokens"):
            ChunkingPolicy(max_tokens=64, overlap_tokens=32)

    def test_budget_must_leave_room_for_title_and_headings(self) -> None:
        """A budget under 32 word pieces is refused."""
        with pytest.raises(ValueError, match="max_tokens"):
            ChunkingPolicy(max_tokens=31, overlap_tokens=0)


class TestSplitSentences:
    def test_splits_after_terminal_punctuation(self) -> None:
        """Sentences end at '.', '!' or '?' (even before a closing quote) followed by space."""
        assert split_sentences('One. Two! "Three?" Four') == ["One.", "Two!", '"Three?"', "Four"]

    def test_decimal_points_do_not_split(self) -> None:
        """A full stop not followed by whitespace is not a sentence end."""
        assert split_sentences("Pi is 3.14 roughly.") == ["Pi is 3.14 roughly."]


class TestFitTitle:
    def test_a_short_title_is_kept(self, word_counter: TokenCounter) -> None:
        """A title within a quarter of the budget is used as it is."""
        assert fit_title(_words("t", 10), word_counter, POLICY) == _words("t", 10)

    def test_a_long_title_keeps_its_leading_words(self, word_counter: TokenCounter) -> None:
        """A title over a quarter of the budget is cut to the words that fit."""
        assert fit_title(_words("t", 30), word_counter, POLICY) == _words("t", 10)

    def test_a_title_of_one_huge_word_is_cut_by_characters(self, word_pieces: TokenCounter) -> None:
        """Even a title without spaces ends up within its share of the budget."""
        policy = ChunkingPolicy(max_tokens=256, overlap_tokens=32)
        title = fit_title("a." * 500, word_pieces, policy)
        assert title
        assert "a.a.".startswith(title[:4])
        assert word_pieces.count_tokens([title])[0] - 2 <= policy.title_tokens


class TestFitHeadingPath:
    def test_a_path_that_fits_is_kept(self, word_counter: TokenCounter) -> None:
        """Title and headings within half of the budget stay whole."""
        path = ("A a", "B b")
        assert fit_heading_path("Title", path, word_counter, POLICY) == path

    def test_outermost_headings_are_dropped_until_the_path_fits(
        self, word_counter: TokenCounter
    ) -> None:
        """Headings go from the outside in, so the innermost, most specific, survives."""
        path = (_words("a", 8), _words("b", 8), _words("c", 8))
        assert fit_heading_path("", path, word_counter, POLICY) == path[1:]

    def test_a_heading_repeating_the_title_costs_nothing(self, word_counter: TokenCounter) -> None:
        """The embedder leaves out a heading equal to the title, so it never forces a drop."""
        title = _words("t", 10)
        path = (title, _words("h", 10))
        assert fit_heading_path(title, path, word_counter, POLICY) == path


class TestChunkSections:
    def test_small_paragraphs_share_a_chunk(self, word_counter: TokenCounter) -> None:
        """Paragraphs that fit together form one chunk, separated by a blank line."""
        assert _texts(["one two", "three four"], word_counter) == ["one two\n\nthree four"]

    def test_a_section_that_fits_is_counted_once_whole(self, word_counter: TokenCounter) -> None:
        """A section that fits one chunk costs one count of that chunk, not one per paragraph."""
        counted: list[str] = []

        class Recording:
            def count_tokens(self, texts: Sequence[str]) -> list[int]:
                counted.extend(texts)
                return word_counter.count_tokens(texts)

        paragraphs = ["Alpha beta.", "Gamma delta.", "Epsilon zeta."]
        drafts = chunk_sections(
            "Title", [Section(("Head",), tuple(paragraphs))], Recording(), POLICY
        )

        whole = embedding_text("Title", ("Head",), "\n\n".join(paragraphs))
        assert [(d.text, d.token_count) for d in drafts] == [("\n\n".join(paragraphs), 10)]
        assert counted.count(whole) == 1
        assert not set(paragraphs) & set(counted)

    def test_a_paragraph_that_does_not_fit_starts_a_chunk_after_the_overlap(
        self, word_counter: TokenCounter
    ) -> None:
        """The next chunk opens with the end of the previous one, then the whole new paragraph."""
        first = "Alpha beta gamma. Delta epsilon."
        second = _words("s", 35)
        assert _texts([first, second], word_counter) == [first, f"Delta epsilon.\n\n{second}"]

    def test_overlap_cuts_words_when_no_sentence_fits(self, word_counter: TokenCounter) -> None:
        """Without a short enough trailing sentence, the last words that fit repeat."""
        chunks = _texts([_words("a", 10), _words("b", 30)], word_counter)
        assert chunks[1] == "a2 a3 a4 a5 a6 a7 a8 a9\n\n" + _words("b", 30)

    def test_long_paragraph_is_split_at_sentences(self, word_counter: TokenCounter) -> None:
        """A paragraph over the budget is cut between sentences, never inside one."""
        sentences = [f"Sentence {i} has exactly six words." for i in range(12)]
        chunks = _texts([" ".join(sentences)], word_counter, NO_OVERLAP)
        assert chunks == [" ".join(sentences[i : i + 6]) for i in (0, 6)]

    def test_overlong_sentence_is_split_at_words_with_overlap(
        self, word_counter: TokenCounter
    ) -> None:
        """A sentence over the budget is cut between words; each cut repeats the overlap."""
        chunks = _texts([_words("w", 100)], word_counter)
        assert [len(chunk.split()) for chunk in chunks] == [38, 38, 38, 10]
        assert chunks[1].split()[:8] == chunks[0].split()[-8:]

    def test_long_code_is_split_at_lines_keeping_indentation(
        self, word_counter: TokenCounter
    ) -> None:
        """A code block over the budget is cut between lines, which keep their indentation."""
        lines = [f"    step_{i} = call(a, b, c)" for i in range(10)]
        chunks = _texts(["\n".join(lines)], word_counter)
        assert len(chunks) == 2
        assert all(line in lines for chunk in chunks for line in chunk.split("\n"))
        assert chunks[0].split("\n") == lines[:7]
        assert chunks[1].split("\n")[0] == lines[6]

    def test_no_overlap_when_disabled(self, word_counter: TokenCounter) -> None:
        """With overlap 0, consecutive chunks share no words."""
        chunks = _texts([_words("a", 30), _words("b", 30)], word_counter, NO_OVERLAP)
        assert chunks == [_words("a", 30), _words("b", 30)]

    def test_overlap_never_crosses_a_heading(self, word_counter: TokenCounter) -> None:
        """A new section's first chunk starts with its own text, not the previous section's."""
        sections = [Section(("A",), (_words("a", 30),)), Section(("B",), (_words("b", 30),))]
        drafts = chunk_sections("", sections, word_counter, POLICY)
        assert [(d.heading_path, d.text) for d in drafts] == [
            (("A",), _words("a", 30)),
            (("B",), _words("b", 30)),
        ]

    def test_title_and_headings_count_against_the_budget(self, word_counter: TokenCounter) -> None:
        """The budget covers the embedding text: title and headings leave less room for text."""
        title, path = _words("t", 5), ("h0 h1",)
        drafts = chunk_sections(
            "T " + title, [Section(path, (_words("w", 60),))], word_counter, POLICY
        )
        assert [len(d.text.split()) for d in drafts] == [30, 30, 16]
        for draft in drafts:
            embedded = embedding_text("T " + title, draft.heading_path, draft.text)
            assert draft.token_count == len(embedded.split()) + 2 <= POLICY.max_tokens

    def test_too_many_chunks_rejects_the_document_early(self, word_counter: TokenCounter) -> None:
        """Past max_chunks the document is refused, before the rest is chunked."""
        with pytest.raises(DocumentRejectedError, match="more than 2 chunks"):
            chunk_sections(
                "", [Section((), (_words("w", 200),))], word_counter, POLICY, max_chunks=2
            )

    def test_characters_are_bounded_as_well_as_tokens(self, word_counter: TokenCounter) -> None:
        """A long run that costs few tokens is still cut, at max_chunk_chars characters."""
        run = "x" * (POLICY.max_chunk_chars * 2 + 100)
        chunks = _texts([run], word_counter)
        assert [len(chunk) for chunk in chunks] == [POLICY.max_chunk_chars] * 2 + [100]
        assert "".join(chunks) == run

    def test_a_counter_that_does_not_add_up_is_caught(self) -> None:
        """If word pieces ever failed to add up over whitespace, the final count catches the
        oversized chunk and rejects the document rather than let the model truncate it."""

        class CharacterCounter:
            def count_tokens(self, texts: Sequence[str]) -> list[int]:
                # Spaces cost here, so joined parts cost more than their sum.
                return [len(text) + 2 for text in texts]

        with pytest.raises(DocumentRejectedError, match="chunker error"):
            chunk_sections("", [Section((), ("ab " * 30,))], CharacterCounter(), NO_OVERLAP)

    @pytest.mark.parametrize("seed", range(20))
    def test_chunks_are_bounded_and_cover_every_word_in_order(
        self, seed: int, word_counter: TokenCounter
    ) -> None:
        """Whatever the paragraphs, each chunk fits the budget, and together they miss no word."""
        rng = random.Random(seed)
        max_tokens = rng.randint(32, 80)
        policy = ChunkingPolicy(max_tokens, rng.randint(0, max_tokens // 2 - 1))
        counter = iter(range(10**6))
        paragraphs = []
        for _ in range(rng.randint(1, 12)):
            sentences = [
                " ".join(f"w{next(counter)}" for _ in range(rng.randint(1, 60))) + "."
                for _ in range(rng.randint(1, 6))
            ]
            paragraphs.append(" ".join(sentences))

        drafts = chunk_sections("", [Section((), tuple(paragraphs))], word_counter, policy)

        assert all(d.token_count <= policy.max_tokens for d in drafts)
        _assert_cover(" ".join(paragraphs).split(), drafts)


def _assert_cover(words: list[str], drafts: Sequence[ChunkDraft]) -> None:
    """Assert each chunk is a run of ``words`` starting no later than the previous one ended,
    and that the runs reach the last word. Words must be unique."""
    index = {word: i for i, word in enumerate(words)}
    assert len(index) == len(words)
    covered_to = 0
    for draft in drafts:
        chunk_words = draft.text.split()
        start = index[chunk_words[0]]
        assert chunk_words == words[start : start + len(chunk_words)]
        assert start <= covered_to  # no gap after the previous chunk
        covered_to = max(covered_to, start + len(chunk_words))
    assert covered_to == len(words)


# --- with the model's real tokenizer ----------------------------------------------------------

REAL_POLICY = ChunkingPolicy(max_tokens=256, overlap_tokens=32)

_ASCII = ["kafka", "stream", "index", "the", "of", "retrieval", "a", "chunk", "vector"]
_CJK = "日本語の文章を検索する中文分词测试한국어텍스트"
_EMOJI = ["👩\u200d💻", "🚀", "🇩🇪", "👍🏽", "❤️", "🧪"]
_RTL = ["مرحبا", "بالعالم", "שלום", "עולם", "العربية", "עברית"]
_CODE = ["foo.bar(baz)", "x=1;", '{"k":[1,2]}', "https://example.test/a?b=c", "i++", "a->b"]


def _random_word(rng: random.Random, serial: int) -> str:
    """A word of a random kind, made unique by a serial number so coverage can be checked."""
    kind = rng.random()
    if kind < 0.5:
        base = rng.choice(_ASCII)
    elif kind < 0.55:
        base = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(20, 60)))
    elif kind < 0.7:
        start = rng.randrange(len(_CJK))
        base = (_CJK * 2)[start : start + rng.randint(1, 12)]
    elif kind < 0.8:
        base = rng.choice(_EMOJI) * rng.randint(1, 3)
    elif kind < 0.9:
        base = rng.choice(_RTL)
    else:
        base = rng.choice(_CODE)
    return f"{base}{serial}"


def _random_document(rng: random.Random) -> tuple[str, list[Section], list[str]]:
    """A title and sections of varied text, with every word of the text in order."""
    serial = iter(range(10**6))
    sections, words = [], []
    for number in range(rng.randint(1, 4)):
        depth = rng.randint(0, 3)
        path = tuple(
            " ".join(_random_word(rng, next(serial)) for _ in range(rng.randint(1, 8)))
            for _ in range(depth)
        )
        paragraphs = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.2:
                lines = [
                    " " * rng.choice((0, 4, 8))
                    + " ".join(_random_word(rng, next(serial)) for _ in range(rng.randint(1, 12)))
                    for _ in range(rng.randint(1, 30))
                ]
                paragraph = "\n".join(lines)
            else:
                sentences = [
                    " ".join(_random_word(rng, next(serial)) for _ in range(rng.randint(1, 80)))
                    + rng.choice(".!?")
                    for _ in range(rng.randint(1, 6))
                ]
                paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            words += paragraph.split()
        sections.append(Section((*path, f"Section {number}"), tuple(paragraphs)))
    title = " ".join(_random_word(rng, next(serial)) for _ in range(rng.randint(0, 12)))
    return title, sections, words


class TestChunkSectionsWithTheRealTokenizer:
    @pytest.mark.parametrize("seed", range(12))
    def test_every_chunk_fits_the_model_and_all_words_are_covered_in_order(
        self, seed: int, word_pieces: TokenCounter
    ) -> None:
        """Over long words, CJK, emoji, RTL and code, no embedding text exceeds 256 word pieces
        (recounted independently), and the chunks cover every word in order."""
        rng = random.Random(seed)
        title, sections, words = _random_document(rng)

        drafts = chunk_sections(title, sections, word_pieces, REAL_POLICY)

        embedded = [embedding_text(title, d.heading_path, d.text) for d in drafts]
        recounted = word_pieces.count_tokens(embedded)
        assert max(recounted) <= REAL_POLICY.max_tokens
        assert [d.token_count for d in drafts] == recounted
        _assert_cover(words, drafts)

    @pytest.mark.parametrize("seed", range(12))
    def test_a_section_is_one_chunk_exactly_when_it_fits_whole(
        self, seed: int, word_pieces: TokenCounter
    ) -> None:
        """Short sections of varied text (cut mid-word too) are one chunk, their paragraphs
        joined by blank lines, when the model reads all of it within the budget, and are cut
        when it would not."""
        rng = random.Random(seed)
        title, sections, _ = _random_document(rng)
        for section in sections:
            paragraphs = tuple(
                paragraph[: rng.randint(1, 200)] for paragraph in section.paragraphs[:3]
            )
            short = Section(section.heading_path, paragraphs)
            path = fit_heading_path(title, short.heading_path, word_pieces, REAL_POLICY)
            joined = "\n\n".join(paragraphs)
            [whole] = word_pieces.count_tokens([embedding_text(title, path, joined)])

            drafts = chunk_sections(title, [short], word_pieces, REAL_POLICY)

            if whole <= REAL_POLICY.max_tokens:
                assert [(d.text, d.token_count) for d in drafts] == [(joined, whole)]
            else:
                assert len(drafts) > 1
                assert max(d.token_count for d in drafts) <= REAL_POLICY.max_tokens

    def test_chunks_are_filled_not_fragmented(self, word_pieces: TokenCounter) -> None:
        """Plain prose packs close to the budget: no chunk but a section's last is under half."""
        text = " ".join(f"Sentence number {i} talks about Kafka partitions." for i in range(200))
        drafts = chunk_sections("Title", [Section((), (text,))], word_pieces, REAL_POLICY)
        assert all(d.token_count > REAL_POLICY.max_tokens // 2 for d in drafts[:-1])
        assert max(d.token_count for d in drafts) <= REAL_POLICY.max_tokens

    def test_a_word_longer_than_a_chunk_is_cut_into_runs(self, word_pieces: TokenCounter) -> None:
        """A 'word' without spaces costing thousands of word pieces is cut into runs that each
        fit, and that put together give the word back."""
        blob = "".join(f"k{i}.v{i};" for i in range(2000))
        drafts = chunk_sections("", [Section((), (blob,))], word_pieces, REAL_POLICY)
        assert len(drafts) > 10
        assert max(d.token_count for d in drafts) <= REAL_POLICY.max_tokens
        assert "".join(d.text.replace(" ", "") for d in drafts) == blob

    def test_long_title_and_deep_headings_still_leave_room(self, word_pieces: TokenCounter) -> None:
        """With a huge title and heading path, chunks still fit, the path losing outer headings."""
        title = fit_title(" ".join(["documentation"] * 200), word_pieces, REAL_POLICY)
        path = tuple(f"Chapter {i} about " + "very " * 20 + "long things" for i in range(6))
        section = Section(path, (" ".join(["word"] * 600),))
        drafts = chunk_sections(title, [section], word_pieces, REAL_POLICY)
        assert max(d.token_count for d in drafts) <= REAL_POLICY.max_tokens
        assert drafts[0].heading_path == path[-len(drafts[0].heading_path) :]
        assert 0 < len(drafts[0].heading_path) < len(path)
