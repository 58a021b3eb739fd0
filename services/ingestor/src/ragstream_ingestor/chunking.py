"""Sections into chunks bounded in the embedding model's own word pieces.

Plain functions, no I/O; the tokenizer comes in through the ``TokenCounter`` port. The budget
counts exactly what the embedder embeds, ``embedding_text(title, heading_path, text)``, special
tokens included, so that no chunk is silently truncated by the model.

Structure first: a section's paragraphs are packed greedily into chunks. A paragraph too large
for one chunk is cut between sentences, a sentence between lines, a line between words, and a
single "word" larger than a chunk (a minified blob) into runs of characters. Each chunk after
the first of a section repeats up to ``overlap_tokens`` from the end of the one before it (whole
sentences where they fit), so a passage cut at a boundary is still retrievable whole. The overlap
counts against the budget, and never crosses a heading: sections are chunked independently.

Word pieces add up: the model's tokenizer splits on whitespace before anything else, so pieces of
text joined by whitespace cost the sum of their parts. Packing relies on that and never re-counts
a growing chunk; every finished chunk is counted once more, whole, to prove it fits. A section
that fits in one chunk is counted whole first, and is that chunk without being packed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from ragstream_common.chunk_text import embedding_text
from ragstream_ingestor.errors import DocumentRejectedError
from ragstream_ingestor.parsing import Section

__all__ = [
    "ChunkDraft",
    "ChunkingPolicy",
    "TokenCounter",
    "chunk_sections",
    "fit_heading_path",
    "fit_title",
    "split_sentences",
]


class TokenCounter(Protocol):
    """Counts what the embedding model reads: its word pieces, special tokens included."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return, for each text, the length of the model's input for it, untruncated."""
        ...


@dataclass(frozen=True)
class ChunkingPolicy:
    """How large chunks may be, and how much consecutive chunks of a section share.

    Args:
        max_tokens: The hard upper bound on a chunk's embedding text, in word pieces including
            the special tokens: the model's maximum input length.
        overlap_tokens: How many word pieces a chunk may repeat from the end of the one before.
    """

    max_tokens: int
    overlap_tokens: int

    def __post_init__(self) -> None:
        if self.max_tokens < 32:
            raise ValueError("max_tokens must be at least 32")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError("overlap_tokens must be at least 0 and below half of max_tokens")

    @property
    def title_tokens(self) -> int:
        """The most a title may take of every chunk's budget; a longer one is shortened."""
        return self.max_tokens // 4

    @property
    def prefix_tokens(self) -> int:
        """The most title and heading path together may take; outer headings go beyond it."""
        return self.max_tokens // 2

    @property
    def max_chunk_chars(self) -> int:
        """A bound on characters too, as a run of 100+ letters is one [UNK] word piece."""
        return self.max_tokens * 32


@dataclass(frozen=True)
class ChunkDraft:
    """One chunk's text before it gets its identity.

    Args:
        heading_path: The headings the chunk is embedded with (possibly shortened, see
            ``fit_heading_path``).
        text: The chunk's own text.
        token_count: The word pieces of its embedding text, special tokens included.
    """

    heading_path: tuple[str, ...]
    text: str
    token_count: int


class _Costs:
    """Word pieces of text fragments, without the special tokens every input carries once."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self.special = counter.count_tokens([""])[0]

    def of(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [count - self.special for count in self.counter.count_tokens(texts)]

    def one(self, text: str) -> int:
        return self.of([text])[0]


def fit_title(title: str, counter: TokenCounter, policy: ChunkingPolicy) -> str:
    """Return ``title``, shortened to its leading words if it would take over a quarter of
    every chunk's budget (it is embedded with each of them).

    Args:
        title: The document's title, whitespace collapsed.
        counter: The model's token counter.
        policy: The budget.
    """
    costs = _Costs(counter)
    if costs.one(title) <= policy.title_tokens:
        return title
    words = title.split()
    kept: list[str] = []
    used = 0
    for word, cost in zip(words, costs.of(words), strict=True):
        if used + cost > policy.title_tokens:
            break
        kept.append(word)
        used += cost
    if not kept:
        return words[0][: _fitting_prefix(words[0], policy.title_tokens, costs)[0]]
    return " ".join(kept)


def fit_heading_path(
    title: str, heading_path: Sequence[str], counter: TokenCounter, policy: ChunkingPolicy
) -> tuple[str, ...]:
    """Return the heading path to embed with a section's chunks, leaving room for their text.

    The title and the headings are embedded with every chunk of the section. When together they
    would take more than half of the budget, the outermost headings are dropped, one by one,
    until they fit: the innermost heading says most about the text below it, and a budget
    mostly spent on headings would cut the section into slivers. (The title itself is already
    bounded, see ``fit_title``, so the empty path always fits.)

    Args:
        title: The document's title, as embedded.
        heading_path: The section's headings, outermost first.
        counter: The model's token counter.
        policy: The budget.
    """
    costs = _Costs(counter)
    path = tuple(heading_path)
    while path and costs.one(embedding_text(title, path, "")) > policy.prefix_tokens:
        path = path[1:]
    return path


# What separates a section's paragraphs inside a chunk.
_PARAGRAPH_JOINER = "\n\n"


def chunk_sections(
    title: str,
    sections: Iterable[Section],
    counter: TokenCounter,
    policy: ChunkingPolicy,
    *,
    max_chunks: int | None = None,
) -> list[ChunkDraft]:
    """Cut the sections of one document into chunks that each fit the model's input.

    Args:
        title: The document's title as embedded (see ``fit_title``).
        sections: The parsed document.
        counter: The model's token counter.
        policy: The budget and overlap.
        max_chunks: Stop, rejecting the document, as soon as it needs more chunks than this.

    Raises:
        DocumentRejectedError: The document needs more than ``max_chunks`` chunks.
    """
    costs = _Costs(counter)
    drafts: list[ChunkDraft] = []
    for section in sections:
        path = fit_heading_path(title, section.heading_path, counter, policy)
        whole = _whole_section(title, path, section.paragraphs, counter, policy)
        if whole is not None:
            _check_chunk_count(len(drafts) + 1, max_chunks)
            drafts.append(whole)
            continue
        prefix = costs.one(embedding_text(title, path, ""))
        budget = policy.max_tokens - costs.special - prefix
        overlap = min(policy.overlap_tokens, budget // 2)
        cutter = _Cutter(budget, overlap, costs, policy.max_chunk_chars)
        units = cutter.units((paragraph, _PARAGRAPH_JOINER) for paragraph in section.paragraphs)
        texts: list[str] = []
        for text in _pack(units, budget, overlap, costs, policy.max_chunk_chars):
            texts.append(text)
            _check_chunk_count(len(drafts) + len(texts), max_chunks)
        totals = counter.count_tokens([embedding_text(title, path, text) for text in texts])
        for text, total in zip(texts, totals, strict=True):
            if total > policy.max_tokens:
                # Word pieces failed to add up: a bug, never a chunk the model would truncate.
                raise DocumentRejectedError(
                    f"a chunk of {total} tokens exceeds the budget of {policy.max_tokens}"
                    " (chunker error; please report)"
                )
            drafts.append(ChunkDraft(path, text, total))
    return drafts


def _check_chunk_count(count: int, max_chunks: int | None) -> None:
    if max_chunks is not None and count > max_chunks:
        raise DocumentRejectedError(
            f"document needs more than {max_chunks} chunks (the limit per document)"
        )


def _whole_section(
    title: str,
    path: tuple[str, ...],
    paragraphs: Sequence[str],
    counter: TokenCounter,
    policy: ChunkingPolicy,
) -> ChunkDraft | None:
    """Return the section as one chunk if all of it fits, else None (it is then packed).

    Packing a section that fits would put all its paragraphs in one chunk anyway, and then
    count that chunk whole; counting it whole first is that same proof, and saves counting
    the paragraphs one by one (half the chunker's time on typical documents). Packing's
    character bound is kept: it counts each paragraph with its joiner, the first one's too.
    """
    if not paragraphs:
        return None
    text = _PARAGRAPH_JOINER.join(paragraphs)
    if len(text) + len(_PARAGRAPH_JOINER) > policy.max_chunk_chars:
        return None
    # A word costs a word piece at least ([UNK] at worst; only one made of control characters
    # costs none), so a section of more words than the budget will not fit: counting it would
    # be wasted.
    if len(text.split()) > policy.max_tokens:
        return None
    [total] = counter.count_tokens([embedding_text(title, path, text)])
    if total > policy.max_tokens:
        return None
    return ChunkDraft(path, text, total)


# --- splitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """The smallest piece packing moves: a paragraph, or a sentence, line or word of one."""

    text: str
    tokens: int
    # The whitespace that separates it from the unit before it inside a chunk.
    joiner: str


# A sentence ends at . ! or ?, possibly followed by a closing quote or bracket, then whitespace.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))(\s+)")
_LINE_BREAK = re.compile(r"(\n)")
_WHITESPACE = re.compile(r"(\s+)")
# Coarsest first: a paragraph that does not fit is cut into sentences, and so on.
_SPLITTERS = (_SENTENCE_BREAK, _LINE_BREAK, _WHITESPACE)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` after sentence-ending punctuation followed by whitespace.

    Args:
        text: One paragraph.
    """
    return [part for part, _ in _split(text.strip(), _SENTENCE_BREAK)]


def _split(text: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """Split ``text`` at ``pattern`` into ``(part, joiner)`` pairs, dropping blank parts.

    The joiner is the whitespace to put back before the part: a newline if the separator held
    one (so code keeps its lines), else a space. Parts keep their indentation.
    """
    pieces = pattern.split(text)
    parts: list[tuple[str, str]] = []
    joiner = ""
    for index, piece in enumerate(pieces):
        if index % 2:
            joiner = "\n" if "\n" in piece else " "
        elif piece.strip():
            parts.append((piece.rstrip(), joiner if parts else ""))
    return parts


# Parts are counted a batch at a time, so that a document past ``max_chunks`` is refused after
# counting little more than what those chunks hold, however large the rest.
_COUNT_BATCH = 128


@dataclass(frozen=True)
class _Cutter:
    """Cuts one section's text into units that each fit a chunk.

    Args:
        budget: Word pieces a chunk's text may hold (title and headings already taken off).
        overlap: Word pieces repeated between consecutive chunks.
        costs: The token counter.
        max_chars: Characters a chunk may hold.
    """

    budget: int
    overlap: int
    costs: _Costs
    max_chars: int

    def units(self, parts: Iterable[tuple[str, str]], level: int = 0) -> Iterator[_Unit]:
        """Yield each ``(text, joiner)`` part as one unit if it fits, else cut finer."""
        iterator = iter(parts)
        while batch := list(islice(iterator, _COUNT_BATCH)):
            # Text longer than a chunk may hold can never be one unit: it is cut uncounted.
            counts = iter(self.costs.of([text for text, _ in batch if self._short(text)]))
            for text, joiner in batch:
                tokens = next(counts) if self._short(text) else None
                if tokens is not None and tokens <= self.budget:
                    yield _Unit(text, tokens, joiner)
                else:
                    yield from self._cut(text, joiner, level)

    def _short(self, text: str) -> bool:
        return len(text) <= self.max_chars

    def _cut(self, text: str, joiner: str, level: int) -> Iterator[_Unit]:
        """Cut ``text`` at the coarsest boundary, from ``level`` on, that splits it at all."""
        for depth in range(level, len(_SPLITTERS)):
            parts = _split(text, _SPLITTERS[depth])
            if len(parts) > 1:
                parts[0] = (parts[0][0], joiner)
                yield from self.units(parts, depth + 1)
                return
        # One unbroken run of characters; leave room for the overlap before each piece.
        yield from _runs(text, joiner, self.budget - self.overlap, self.costs, self.max_chars)


def _runs(text: str, joiner: str, budget: int, costs: _Costs, max_chars: int) -> Iterator[_Unit]:
    """Cut a run without whitespace into pieces of at most ``budget`` word pieces.

    The pieces are joined by a space when they share a chunk, so that each keeps the word
    pieces it was counted with (the tokenizer would read the glued pieces differently).
    """
    start = 0
    while start < len(text):
        window = text[start : start + max_chars]
        end, tokens = _fitting_prefix(window, budget, costs)
        yield _Unit(window[:end], tokens, joiner if start == 0 else " ")
        start += end


def _fitting_prefix(text: str, budget: int, costs: _Costs) -> tuple[int, int]:
    """Return ``(n, cost)``, ``n >= 1``, such that ``text[:n]`` costs at most ``budget``.

    Gallops from ``budget`` characters (about one word piece each at most) doubling while the
    prefix fits, then bisects: no probe is much longer than the answer, so cutting a long run
    costs a few encodings of each piece. It finds a long prefix that fits, not necessarily the
    longest, since word pieces need not grow with every character added.
    """
    fits, fits_cost = 0, 0
    probe = max(budget, 1)
    fails = len(text) + 1
    while probe <= len(text):
        cost = costs.one(text[:probe])
        if cost > budget:
            fails = probe
            break
        fits, fits_cost = probe, cost
        probe *= 2
    else:
        if fits < len(text):
            cost = costs.one(text)
            if cost <= budget:
                return len(text), cost
            fails = len(text)
    while fails - fits > 1:
        middle = (fits + fails) // 2
        cost = costs.one(text[:middle])
        if cost <= budget:
            fits, fits_cost = middle, cost
        else:
            fails = middle
    if fits == 0:
        # Not even one character fits: impossible with any real budget, but never loop forever.
        return 1, costs.one(text[:1])
    return fits, fits_cost


# --- packing ----------------------------------------------------------------------------------


def _join(units: Sequence[_Unit]) -> str:
    return units[0].text + "".join(unit.joiner + unit.text for unit in units[1:])


def _pack(
    units: Iterable[_Unit], budget: int, overlap: int, costs: _Costs, max_chars: int
) -> Iterator[str]:
    """Pack units greedily into chunk texts of at most ``budget`` word pieces each.

    Characters are bounded too (``max_chars``), for text that costs few word pieces per
    character, such as long runs the tokenizer reads as a single unknown word.
    """
    current: list[_Unit] = []
    used = chars = 0
    for unit in units:
        size = _length(unit)
        if current and (used + unit.tokens > budget or chars + size > max_chars):
            yield _join(current)
            current = _overlap(current, min(overlap, budget - unit.tokens), costs)
            chars = sum(_length(part) for part in current)
            if chars + size > max_chars:
                current, chars = [], 0
            used = sum(part.tokens for part in current)
        current.append(unit)
        used += unit.tokens
        chars += size
    if current:
        yield _join(current)


def _length(unit: _Unit) -> int:
    """The characters ``unit`` adds to a chunk, its joiner included (an upper bound)."""
    return len(unit.joiner) + len(unit.text)


def _overlap(units: Sequence[_Unit], budget: int, costs: _Costs) -> list[_Unit]:
    """Return the end of ``units`` to repeat at the start of the next chunk, within ``budget``."""
    taken: list[_Unit] = []
    remaining = budget
    for unit in reversed(units):
        if remaining <= 0:
            break
        if unit.tokens <= remaining:
            taken.append(unit)
            remaining -= unit.tokens
            continue
        # Prefer whole sentences; cut mid-sentence only when nothing else would be repeated.
        tail = _tail(unit, remaining, _SENTENCE_BREAK, costs)
        if tail is None and not taken:
            tail = _tail(unit, remaining, _WHITESPACE, costs)
        if tail is not None:
            taken.append(tail)
        break
    taken.reverse()
    return taken


def _tail(unit: _Unit, budget: int, pattern: re.Pattern[str], costs: _Costs) -> _Unit | None:
    """Return the longest run of ``unit``'s last parts (split at ``pattern``) within ``budget``."""
    # A part costs at least one word piece unless the tokenizer drops all of it, so no more than
    # the last ``budget`` parts are worth counting.
    parts = _split(unit.text, pattern)[-max(budget, 1) :]
    kept = 0
    used = 0
    for cost in reversed(costs.of([part for part, _ in parts])):
        if used + cost > budget:
            break
        kept += 1
        used += cost
    if kept == 0:
        return None
    tail = parts[-kept:]
    text = tail[0][0] + "".join(joiner + part for part, joiner in tail[1:])
    return _Unit(text, used, unit.joiner)
