"""Documents into sections: choose a parser by media type, decode, parse, normalise.

Plain functions, no I/O. Every parser returns the same shape: an optional title found in the
document, and sections, each the paragraphs under one path of headings. Chunking works on that
shape alone, so it never needs to know where a document came from.

| media type | sections | headings | title (when the event has none) |
| --- | --- | --- | --- |
| text/plain | one | none | none |
| text/markdown | one per ATX or setext heading | the heading path | the document's only H1 |
| text/html | one per h1-h6 | the heading path | ``<title>``, else the first ``<h1>`` |
| application/pdf | one per page with text | ``Page N`` | the PDF's Title metadata |
| application/json, application/x-ndjson | one per record | its title, name or id | none |
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PageElement, PreformattedString
from pypdf import PdfReader

from ragstream_ingestor.decoding import decode_text_bytes, normalise_text
from ragstream_ingestor.errors import DocumentRejectedError

__all__ = [
    "GENERIC_CONTENT_TYPES",
    "SUPPORTED_MEDIA_TYPES",
    "ParsedDocument",
    "Section",
    "normalise_content_type",
    "parse_document",
    "parse_html",
    "parse_json",
    "parse_markdown",
    "parse_ndjson",
    "parse_pdf",
    "parse_plain",
    "resolve_media_type",
]


@dataclass(frozen=True)
class Section:
    """The paragraphs under one heading, with the headings that lead to it (outermost first)."""

    heading_path: tuple[str, ...]
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class ParsedDocument:
    """What a parser found in a document.

    Args:
        sections: The document's text, in order; never a section without paragraphs.
        title: A title found in the document itself ("" when none).
        replaced: Invalid byte sequences that decoding replaced with U+FFFD.
    """

    sections: tuple[Section, ...]
    title: str = ""
    replaced: int = field(default=0, compare=False)


# --- choosing a parser ------------------------------------------------------------------------

# Aliases in the wild, mapped to the type whose parser reads them.
_MEDIA_TYPE_ALIASES: Mapping[str, str] = {
    "text/x-markdown": "text/markdown",
    "application/xhtml+xml": "text/html",
    "application/x-pdf": "application/pdf",
    "text/json": "application/json",
    "application/jsonl": "application/x-ndjson",
    "application/ndjson": "application/x-ndjson",
    "application/x-jsonlines": "application/x-ndjson",
}
_EXTENSIONS: Mapping[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "text/html",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}
# Types that say nothing about the content: the file name decides instead. text/plain is the
# event's default and what many clients send for any upload, so a file name with another known
# extension wins over it (see ``resolve_media_type``).
GENERIC_CONTENT_TYPES: frozenset[str] = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)
SUPPORTED_MEDIA_TYPES: Sequence[str] = (
    "text/plain",
    "text/markdown",
    "text/html",
    "application/pdf",
    "application/json",
    "application/x-ndjson",
)


def normalise_content_type(content_type: str) -> str:
    """Return the media type of a Content-Type value, lower-cased and without parameters.

    Args:
        content_type: For example ``"text/markdown; charset=utf-8"``.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media_type, media_type)


def _extension_type(filename: str | None) -> str | None:
    if not filename:
        return None
    # Browsers send a bare name, other clients a path of either flavour.
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    return _EXTENSIONS.get(suffix)


def resolve_media_type(content_type: str, filename: str | None = None) -> str:
    """Return the supported media type that decides how a document is parsed.

    The Content-Type decides, unless it is missing or generic (``application/octet-stream``), or
    ``text/plain`` on a file whose extension names another supported type (``notes.md``); then
    the file name's extension decides.

    Args:
        content_type: The event's Content-Type.
        filename: The name of the uploaded file, if any.

    Raises:
        DocumentRejectedError: Neither the type nor the file name names a supported type.
    """
    media_type = normalise_content_type(content_type)
    by_extension = _extension_type(filename)
    if by_extension is not None and (
        media_type in GENERIC_CONTENT_TYPES or media_type == "text/plain"
    ):
        return by_extension
    if media_type in SUPPORTED_MEDIA_TYPES:
        return media_type
    supported = ", ".join(SUPPORTED_MEDIA_TYPES)
    if media_type in GENERIC_CONTENT_TYPES:
        raise DocumentRejectedError(
            f"content type {content_type!r} and file name {filename!r} name no supported type"
            f" (supported: {supported})"
        )
    raise DocumentRejectedError(
        f"unsupported content type {content_type!r} (supported: {supported})"
    )


def parse_document(content: str | bytes, media_type: str) -> ParsedDocument:
    """Decode (when ``content`` is bytes), parse and normalise one document.

    Args:
        content: The document as text, or as bytes (required for PDF).
        media_type: A supported media type (see ``resolve_media_type``).

    Raises:
        DocumentRejectedError: The type is unsupported, the document cannot be parsed, or it
            holds no text.
    """
    replaced = 0
    if media_type == "application/pdf":
        if isinstance(content, str):
            raise DocumentRejectedError("a PDF must be sent as bytes (content_base64), not text")
        parsed = parse_pdf(content)
    else:
        parser = _TEXT_PARSERS.get(media_type)
        if parser is None:
            raise DocumentRejectedError(f"unsupported media type {media_type!r}")
        if isinstance(content, bytes):
            decoded = decode_text_bytes(content)
            content, replaced = decoded.text, decoded.replaced
        try:
            parsed = parser(normalise_text(content))
        except RecursionError as error:
            # JSON nested hundreds deep: decoding and flattening recurse, and no real record
            # nests so far.
            raise DocumentRejectedError(f"{media_type} document is nested too deeply") from error
    parsed = _clean(parsed)
    if not parsed.sections:
        raise DocumentRejectedError("document has no text")
    return ParsedDocument(parsed.sections, parsed.title, replaced)


def _clean(parsed: ParsedDocument) -> ParsedDocument:
    """Normalise every string a parser produced and drop what is left empty."""
    sections = []
    for section in parsed.sections:
        paragraphs = tuple(
            text
            for text in (normalise_text(p).strip("\n") for p in section.paragraphs)
            if text.strip()
        )
        if paragraphs:
            headings = tuple(
                heading for heading in (_collapse(h) for h in section.heading_path) if heading
            )
            sections.append(Section(headings, paragraphs))
    return ParsedDocument(tuple(sections), _collapse(parsed.title), parsed.replaced)


def _collapse(text: str) -> str:
    """Return ``text`` normalised, on one line, with runs of whitespace as single spaces."""
    return " ".join(normalise_text(text).split())


_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def _paragraphs(text: str) -> tuple[str, ...]:
    """Split text into paragraphs at blank lines (lines holding only spaces count as blank)."""
    return tuple(part.strip("\n") for part in _BLANK_LINES.split(text) if part.strip())


# --- plain text and Markdown ------------------------------------------------------------------


def parse_plain(text: str) -> ParsedDocument:
    """Parse plain text: one section of blank-line separated paragraphs.

    Args:
        text: Normalised text (see ``normalise_text``).
    """
    paragraphs = _paragraphs(text)
    return ParsedDocument((Section((), paragraphs),) if paragraphs else ())


# ATX headings as CommonMark defines them: up to three spaces of indent, 1-6 '#', then a space or
# the end of the line; an optional closing run of '#' is not part of the title.
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# A setext underline: '=' makes the paragraph above it an H1, '-' an H2.
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def parse_markdown(text: str) -> ParsedDocument:
    """Parse Markdown into sections at its headings, and each section into paragraphs.

    ATX (``## Title``) and setext (a line underlined with ``===`` or ``---``) headings start
    sections; each section remembers the path of headings above it. A fenced code block is one
    paragraph, blank lines and ``#`` lines inside it included. A heading directly followed by
    another yields no section, but its title leads the sections nested below it. The document's
    title is its H1 when it has exactly one.

    Args:
        text: Normalised text (see ``normalise_text``).
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    lines: list[str] = []
    fence: str | None = None
    top_headings: list[str] = []

    def end_paragraph() -> None:
        if lines:
            paragraphs.append("\n".join(lines))
            lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append(Section(tuple(title for _, title in path if title), tuple(paragraphs)))
            paragraphs.clear()

    def start_section(level: int, title: str) -> None:
        end_section()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        if level == 1:
            top_headings.append(title)

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
        atx = _ATX_HEADING.match(line)
        if atx:
            start_section(len(atx.group(1)), (atx.group(2) or "").strip())
            continue
        underline = _SETEXT_UNDERLINE.match(line)
        if underline and lines:
            # The paragraph above, all its lines, is the heading's text.
            title = " ".join(part.strip() for part in lines)
            lines.clear()
            start_section(1 if underline.group(1)[0] == "=" else 2, title)
            continue
        if line.strip():
            lines.append(line)
        else:
            end_paragraph()
    # An unclosed fence runs to the end of the document, as in CommonMark.
    end_section()
    title = top_headings[0] if len(top_headings) == 1 else ""
    return ParsedDocument(tuple(sections), title)


# --- HTML -------------------------------------------------------------------------------------

# Elements that are never content: code, styling, navigation and page furniture, forms.
_HTML_NOISE = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "template",
    "svg",
    "iframe",
    "object",
    "canvas",
    "button",
    "select",
)
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Elements whose start and end break the text flow into separate blocks.
_HTML_BLOCKS = frozenset(
    {
        "address",
        "article",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "menu",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "ul",
    }
)


def parse_html(text: str) -> ParsedDocument:
    """Parse HTML into sections at h1-h6, with paragraphs, list items, rows and code as blocks.

    Scripts, styles, navigation, headers, footers, asides, forms, templates and SVG are dropped,
    as are comments. Whitespace inside a block is collapsed, except in ``<pre>``. A table row
    becomes one block of its cells joined by `` | ``.

    Args:
        text: The page's markup, normalised.
    """
    soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title")
    title = _inline_text(title_tag) if isinstance(title_tag, Tag) else ""
    if not title:
        first_h1 = soup.find("h1")
        title = _inline_text(first_h1) if isinstance(first_h1, Tag) else ""
    for tag in soup.find_all(["head", "title", *_HTML_NOISE]):
        # A tag inside one already removed is decomposed with it.
        if not tag.decomposed:
            tag.decompose()
    return ParsedDocument(_HtmlSections().read(soup), title)


def _inline_text(tag: Tag) -> str:
    """Return the text of a heading, title or table cell on one line.

    Strings are joined as they are: inline markup (``<b>``, ``<code>``) inside a word must not
    split it, and the spaces between words are in the strings themselves.
    """
    return " ".join(tag.get_text().split())


class _HtmlSections:
    """Walks a parsed page in document order, collecting blocks under their heading path.

    The walk keeps its own stack rather than recursing, so that however deeply a page nests its
    elements, Python's recursion limit is never reached.
    """

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def read(self, soup: BeautifulSoup) -> tuple[Section, ...]:
        # Each entry: the children still to visit, and whether their parent is a block (which
        # ends the text flow when it closes).
        stack: list[tuple[Iterator[PageElement], bool]] = [(iter(soup.children), False)]
        while stack:
            children, closes_block = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                if closes_block:
                    self._end_block()
            elif isinstance(child, NavigableString):
                # Comments, CDATA, doctypes and processing instructions are not text.
                if not isinstance(child, PreformattedString):
                    self.inline.append(str(child))
            elif isinstance(child, Tag) and (descend := self._visit(child)) is not None:
                stack.append((iter(child.children), descend))
        self._end_section()
        return tuple(self.sections)

    def _visit(self, tag: Tag) -> bool | None:
        """Handle ``tag``; return None if its content is done with, else whether it is a block."""
        name = tag.name.lower()
        level = _HTML_HEADINGS.get(name)
        if level is not None:
            self._end_section()
            while self.path and self.path[-1][0] >= level:
                self.path.pop()
            self.path.append((level, _inline_text(tag)))
        elif name == "pre":
            self._end_block()
            code = "\n".join(line.rstrip() for line in tag.get_text().split("\n"))
            self.blocks.append(code.strip("\n"))
        elif name == "tr":
            self._end_block()
            cells = (_inline_text(cell) for cell in tag.find_all(["td", "th"]))
            self.blocks.append(" | ".join(cell for cell in cells if cell))
        elif name == "br":
            self.inline.append("\n")
        elif name in _HTML_BLOCKS:
            self._end_block()
            return True
        else:
            return False
        return None

    def _end_block(self) -> None:
        block = " ".join("".join(self.inline).split())
        self.inline.clear()
        if block:
            self.blocks.append(block)

    def _end_section(self) -> None:
        self._end_block()
        blocks = tuple(block for block in self.blocks if block.strip())
        self.blocks.clear()
        if blocks:
            headings = tuple(title for _, title in self.path if title)
            self.sections.append(Section(headings, blocks))


# --- PDF --------------------------------------------------------------------------------------


def parse_pdf(data: bytes) -> ParsedDocument:
    """Parse a PDF: the text of each page is a section under the heading ``Page N``.

    Page numbers sit in the heading path so that a citation can name the page, and so that an
    edit on one page leaves the chunks of the others (and their ids) as they were.

    Args:
        data: The PDF file.

    Raises:
        DocumentRejectedError: The PDF is unreadable, encrypted with a password, or has no
            extractable text (a scan without a text layer).
    """
    # pypdf raises many types (its own, but also KeyError, ValueError, struct errors) on a
    # damaged file; whichever it is, the document can never be read, so all reject it.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _decrypts_without_password(reader):
            raise DocumentRejectedError("PDF is encrypted with a password; send it decrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = _pdf_title(reader)
    except DocumentRejectedError:
        raise
    except Exception as error:
        raise DocumentRejectedError(f"unreadable PDF: {type(error).__name__}: {error}") from error
    sections = tuple(
        Section((f"Page {number}",), paragraphs)
        for number, page_text in enumerate(pages, start=1)
        if (paragraphs := _paragraphs(normalise_text(page_text)))
    )
    if not sections:
        raise DocumentRejectedError(
            "PDF has no extractable text (a scanned document without a text layer?)"
        )
    return ParsedDocument(sections, title)


def _decrypts_without_password(reader: PdfReader) -> bool:
    """Whether an encrypted PDF opens with the empty user password (restrictions only)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:
        return False


def _pdf_title(reader: PdfReader) -> str:
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return title if isinstance(title, str) else ""


# --- JSON and JSON lines ----------------------------------------------------------------------

_HEADING_FIELDS = ("title", "name", "id")
_TEXT_FIELDS = ("content", "text", "body")


def parse_json(text: str) -> ParsedDocument:
    """Parse a JSON object, or an array of objects: each object is a section (see ``_record``).

    Args:
        text: The JSON document, normalised.

    Raises:
        DocumentRejectedError: It is not valid JSON, or not an object or array of objects.
    """
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DocumentRejectedError(f"invalid JSON: {error}") from error
    if isinstance(value, dict):
        records = [value]
    elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
        records = value
    else:
        raise DocumentRejectedError("JSON document must be an object or an array of objects")
    return ParsedDocument(tuple(section for record in records if (section := _record(record))))


def parse_ndjson(text: str) -> ParsedDocument:
    """Parse JSON lines (one object per line; blank lines skipped): each object is a section.

    Args:
        text: The document, normalised.

    Raises:
        DocumentRejectedError: A line is not valid JSON or not an object; the reason names it.
    """
    sections = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            raise DocumentRejectedError(f"invalid JSON on line {number}: {error}") from error
        if not isinstance(value, dict):
            raise DocumentRejectedError(f"line {number} is not a JSON object")
        if section := _record(value):
            sections.append(section)
    return ParsedDocument(tuple(sections))


def _record(record: Mapping[str, Any]) -> Section | None:
    """Turn one JSON object into a section.

    The heading is the first of its ``title``, ``name`` or ``id`` fields that holds a value. The
    text is its ``content``, ``text`` or ``body`` field; without one, the object's other values
    as ``key: value`` lines, nested objects flattened to dotted keys (``config.port: 9092``).
    """
    heading_field = next(
        (key for key in _HEADING_FIELDS if _scalar_text(record.get(key))),
        None,
    )
    heading = _scalar_text(record[heading_field]) if heading_field else ""
    text_field = next(
        (key for key in _TEXT_FIELDS if isinstance(record.get(key), str) and record[key].strip()),
        None,
    )
    if text_field is not None:
        paragraphs = _paragraphs(normalise_text(record[text_field]))
    else:
        lines = [
            f"{key}: {value}"
            for key, value in _flatten(record, "")
            if key != heading_field and value
        ]
        paragraphs = ("\n".join(lines),) if lines else ()
    if not paragraphs:
        return None
    return Section((heading,) if heading else (), paragraphs)


def _scalar_text(value: object) -> str:
    """Return a JSON scalar as text ("" for null, objects and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, int | float):
        return json.dumps(value)
    return ""


def _flatten(value: object, key: str) -> Iterator[tuple[str, str]]:
    """Yield ``(dotted key, text)`` for every scalar below ``value``.

    An array of scalars is one line of comma-separated values; the items of an array holding
    objects or arrays are numbered (``authors.0.name``).
    """
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _flatten(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        if all(not isinstance(item, Mapping | list) for item in value):
            yield key, ", ".join(text for item in value if (text := _scalar_text(item)))
        else:
            for index, item in enumerate(value):
                yield from _flatten(item, f"{key}.{index}")
    else:
        yield key, _scalar_text(value)


# The parsers of text; PDF, read from bytes, is the one other type.
_TEXT_PARSERS: Mapping[str, Callable[[str], ParsedDocument]] = {
    "text/plain": parse_plain,
    "text/markdown": parse_markdown,
    "text/html": parse_html,
    "application/json": parse_json,
    "application/x-ndjson": parse_ndjson,
}
