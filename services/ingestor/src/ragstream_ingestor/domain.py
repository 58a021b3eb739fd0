"""Documents into chunks: parse, clean, split on structure, pack into word-bounded chunks.

Plain functions, no I/O. A document is split into sections at its Markdown headings (each section
remembers the path of headings above it), a section into blank-line paragraphs, and paragraphs are
packed greedily into chunks of at most ``max_words`` words. A paragraph that cannot fit in one chunk
is split at sentence boundaries, and a sentence that cannot fit at word boundaries. Each chunk
after the first in a section repeats up to ``overlap_words`` words from the end of the one before
it (whole sentences where they fit), so a passage cut at a boundary is still retrievable whole. The
overlap counts against the budget: no chunk ever exceeds ``max_words``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ragstream_common.events import (
    Chunk,
    DocumentChunked,
    DocumentDeleted,
    DocumentStatus,
    DocumentUpserted,
)

__all__ = [
    "SUPPORTED_CONTENT_TYPES",
    "ChunkingPolicy",
    "DocumentRejectedError",
    "Section",
    "chunk_deletion",
    "chunk_document",
    "chunk_upsert",
    "chunked_status",
    "clean_text",
    "count_words",
    "document_version",
    "failed_status",
    "normalise_content_type",
    "pack_paragraphs",
    "parse_sections",
    "sha256_hex",
    "split_markdown",
    "split_plain",
    "split_sentences",
]

SUPPORTED_CONTENT_TYPES: tuple[str, ...] = ("text/plain", "text/markdown")


class DocumentRejectedError(ValueError):
    """A document that can never be chunked, whatever the retries; the message says why."""


@dataclass(frozen=True)
class ChunkingPolicy:
    """How large chunks may be, and how much consecutive chunks of a section share.

    Args:
        max_words: The hard upper bound on a chunk's words, overlap included.
        overlap_words: How many words a chunk may repeat from the end of the one before it.
    """

    max_words: int
    overlap_words: int

    def __post_init__(self) -> None:
        if self.max_words < 1:
            raise ValueError("max_words must be positive")
        if not 0 <= self.overlap_words < self.max_words:
            raise ValueError("overlap_words must be at least 0 and smaller than max_words")


@dataclass(frozen=True)
class Section:
    """The paragraphs under one heading, with the headings that lead to it (outermost first)."""

    heading_path: tuple[str, ...]
    paragraphs: tuple[str, ...]


# --- parsing ----------------------------------------------------------------------------------

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# ATX headings as CommonMark defines them: up to three spaces of indent, 1-6 '#', then a space or
# the end of the line; an optional closing run of '#' is not part of the title.
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
# A sentence ends at . ! or ?, possibly followed by a closing quote or bracket, then whitespace.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+")


def normalise_content_type(content_type: str) -> str:
    """Return the media type of a Content-Type value, lower-cased and without parameters.

    Args:
        content_type: For example ``"text/markdown; charset=utf-8"``.
    """
    return content_type.split(";", 1)[0].strip().lower()


def clean_text(text: str) -> str:
    """Normalise line endings, drop a byte-order mark, control characters and trailing spaces.

    Args:
        text: The document's content as published.
    """
    # U+FEFF is a byte-order mark at the start and a deprecated zero-width space elsewhere.
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_CHARACTERS.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def parse_sections(content: str, content_type: str) -> list[Section]:
    """Clean ``content`` and split it into sections by the rules of its content type.

    Args:
        content: The document's text.
        content_type: Its Content-Type; Markdown is split at headings, plain text is one section.

    Raises:
        DocumentRejectedError: The type is not supported, or the document holds no text.
    """
    media_type = normalise_content_type(content_type)
    if media_type not in SUPPORTED_CONTENT_TYPES:
        supported = ", ".join(SUPPORTED_CONTENT_TYPES)
        raise DocumentRejectedError(
            f"unsupported content type {content_type!r} (supported: {supported})"
        )
    text = clean_text(content)
    if not text.strip():
        raise DocumentRejectedError("document is empty")
    return split_markdown(text) if media_type == "text/markdown" else split_plain(text)


def split_plain(text: str) -> list[Section]:
    """Split plain text into one section of blank-line separated paragraphs.

    Args:
        text: Cleaned text (see ``clean_text``).
    """
    paragraphs = tuple(
        paragraph.strip("\n") for paragraph in _BLANK_LINES.split(text) if paragraph.strip()
    )
    return [Section((), paragraphs)] if paragraphs else []


def split_markdown(text: str) -> list[Section]:
    """Split Markdown into sections at ATX headings, and each section into paragraphs.

    A fenced code block is one paragraph, blank lines and ``#`` lines inside it included. Sections
    without any paragraph (a heading directly followed by another) are left out; their headings
    still appear in the ``heading_path`` of the sections nested below them.

    Args:
        text: Cleaned text (see ``clean_text``).
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    lines: list[str] = []
    fence: str | None = None

    def end_paragraph() -> None:
        if lines:
            paragraphs.append("\n".join(lines))
            lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append(Section(tuple(title for _, title in path if title), tuple(paragraphs)))
            paragraphs.clear()

    for line in text.split("\n"):
        if fence is not None:
            lines.append(line)
            closing = _FENCE.match(line)
            if (
                closing
                and line.strip() == closing.group(1)
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
            ):
                fence = None
                end_paragraph()
            continue
        opening = _FENCE.match(line)
        if opening:
            end_paragraph()
            fence = opening.group(1)
            lines.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            end_section()
            level = len(heading.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, (heading.group(2) or "").strip()))
            continue
        if line.strip():
            lines.append(line)
        else:
            end_paragraph()
    # An unclosed fence runs to the end of the document, as in CommonMark.
    end_section()
    return sections


# --- chunking ---------------------------------------------------------------------------------


def count_words(text: str) -> int:
    """Return the number of whitespace-separated words in ``text``."""
    return len(text.split())


def split_sentences(text: str) -> list[str]:
    """Split ``text`` after sentence-ending punctuation followed by whitespace.

    Args:
        text: One paragraph.
    """
    return [sentence for sentence in _SENTENCE_BREAK.split(text.strip()) if sentence]


@dataclass(frozen=True)
class _Unit:
    """The smallest piece packing moves: a whole paragraph, or a sentence or word run of one."""

    text: str
    words: int
    # Part of the same paragraph as the unit before it: joined by a space, not a blank line.
    continues: bool


def _units_of(paragraph: str, policy: ChunkingPolicy) -> list[_Unit]:
    words = count_words(paragraph)
    if words <= policy.max_words:
        return [_Unit(paragraph, words, continues=False)]
    units: list[_Unit] = []
    # Runs cut from an overlong sentence leave room for the overlap, as whole sentences would.
    run_words = policy.max_words - policy.overlap_words
    for sentence in split_sentences(paragraph):
        sentence_words = sentence.split()
        if len(sentence_words) <= policy.max_words:
            units.append(_Unit(sentence, len(sentence_words), continues=True))
            continue
        for start in range(0, len(sentence_words), run_words):
            run = sentence_words[start : start + run_words]
            units.append(_Unit(" ".join(run), len(run), continues=True))
    units[0] = replace(units[0], continues=False)
    return units


def _join(units: Sequence[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(" " if unit.continues else "\n\n")
        parts.append(unit.text)
    return "".join(parts)


def _overlap(units: Sequence[_Unit], budget: int) -> list[_Unit]:
    """Return the end of ``units`` to repeat at the start of the next chunk, within ``budget``."""
    taken: list[_Unit] = []
    remaining = budget
    for unit in reversed(units):
        if remaining <= 0:
            break
        if unit.words <= remaining:
            taken.append(unit)
            remaining -= unit.words
            continue
        # Prefer whole sentences; cut mid-sentence only when nothing else would be repeated.
        tail: list[str] = []
        tail_words = 0
        for sentence in reversed(split_sentences(unit.text)):
            words = count_words(sentence)
            if tail_words + words > remaining:
                break
            tail.insert(0, sentence)
            tail_words += words
        if not tail and not taken:
            tail = unit.text.split()[-remaining:]
            tail_words = len(tail)
        if tail:
            taken.append(_Unit(" ".join(tail), tail_words, continues=True))
        break
    taken.reverse()
    return taken


def pack_paragraphs(paragraphs: Sequence[str], policy: ChunkingPolicy) -> list[str]:
    """Pack one section's paragraphs into chunk texts of at most ``policy.max_words`` words.

    Paragraphs are kept whole when they fit in a chunk and joined by blank lines; a longer one
    is cut at sentence boundaries (or, for an overlong sentence, between words).

    Args:
        paragraphs: The section's paragraphs, in order.
        policy: The word budget and overlap.
    """
    units = [unit for paragraph in paragraphs for unit in _units_of(paragraph, policy)]
    chunks: list[str] = []
    current: list[_Unit] = []
    words = 0
    for unit in units:
        if current and words + unit.words > policy.max_words:
            chunks.append(_join(current))
            budget = min(policy.overlap_words, policy.max_words - unit.words)
            current = _overlap(current, budget)
            words = sum(part.words for part in current)
        current.append(unit)
        words += unit.words
    if current:
        chunks.append(_join(current))
    return chunks


def sha256_hex(text: str) -> str:
    """Return the SHA-256 of ``text`` encoded as UTF-8, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def chunk_document(
    doc_id: str, content: str, content_type: str, policy: ChunkingPolicy
) -> list[Chunk]:
    """Parse and chunk one document; positions run from 0 across all its sections.

    Args:
        doc_id: The document's id, the prefix of every ``chunk_id``.
        content: Its text.
        content_type: How to parse it.
        policy: The word budget and overlap.

    Raises:
        DocumentRejectedError: The document cannot be parsed or holds no text to index.
    """
    chunks: list[Chunk] = []
    for section in parse_sections(content, content_type):
        for text in pack_paragraphs(section.paragraphs, policy):
            position = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_id}#{position}",
                    doc_id=doc_id,
                    position=position,
                    text=text,
                    heading_path=list(section.heading_path),
                    content_hash=sha256_hex(text),
                )
            )
    if not chunks:
        raise DocumentRejectedError("document has no text outside its headings")
    return chunks


# --- events -----------------------------------------------------------------------------------


def document_version(offset: int) -> int:
    """Return the version of the document carried by the ``documents`` record at ``offset``.

    Every version of a document is keyed by its id and so lands on one partition, where offsets
    only grow: the offset orders versions without any state, and a redelivered record gets the
    same version again.

    Args:
        offset: The Kafka offset of the record.
    """
    return offset + 1


def chunk_upsert(event: DocumentUpserted, version: int, policy: ChunkingPolicy) -> DocumentChunked:
    """Return the chunks of one version of a document.

    Args:
        event: The upsert, as published.
        version: See ``document_version``.
        policy: The word budget and overlap.

    Raises:
        DocumentRejectedError: The document cannot be parsed or holds no text to index.
    """
    return DocumentChunked(
        doc_id=event.doc_id,
        tenant=event.tenant,
        version=version,
        title=event.title,
        source=event.source,
        doc_hash=sha256_hex(event.content),
        chunks=chunk_document(event.doc_id, event.content, event.content_type, policy),
        published_at=event.published_at,
    )


def chunk_deletion(event: DocumentDeleted, version: int) -> DocumentChunked:
    """Return a version of the document with no chunks, which retires every older chunk.

    A delete travels the same ordered path as upserts, so it can never overtake (or be overtaken
    by) an upsert of the same document that is still on its way to the index.

    Args:
        event: The delete, as published.
        version: See ``document_version``.
    """
    return DocumentChunked(
        doc_id=event.doc_id,
        tenant=event.tenant,
        version=version,
        doc_hash=sha256_hex(""),
        chunks=[],
        published_at=event.published_at,
    )


def chunked_status(chunked: DocumentChunked) -> DocumentStatus:
    """Return the ``chunked`` status of a document version.

    Args:
        chunked: The version just chunked.
    """
    return DocumentStatus(
        doc_id=chunked.doc_id,
        tenant=chunked.tenant,
        stage="chunked",
        version=chunked.version,
        chunk_count=len(chunked.chunks),
        published_at=chunked.published_at,
    )


def failed_status(event: DocumentUpserted, version: int, reason: str) -> DocumentStatus:
    """Return the ``failed`` status of a document version that cannot be chunked.

    Args:
        event: The upsert that failed.
        version: See ``document_version``.
        reason: Why, for whoever asks the gateway about the document.
    """
    return DocumentStatus(
        doc_id=event.doc_id,
        tenant=event.tenant,
        stage="failed",
        version=version,
        reason=reason,
        published_at=event.published_at,
    )
