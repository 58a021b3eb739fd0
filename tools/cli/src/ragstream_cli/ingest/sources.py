"""What ``ragstream ingest`` publishes: files found from paths, folders and globs, read into upserts.

Discovery and reading only; nothing here speaks to Kafka.
"""

from __future__ import annotations

import base64
import binascii
import glob
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ragstream_common.events import DocumentUpserted
from ragstream_common.identifiers import is_valid_doc_id, is_valid_tenant
from ragstream_common.topics import MAX_MESSAGE_BYTES

__all__ = [
    "BULK_SUFFIXES",
    "CONTENT_TYPES",
    "Plan",
    "PreparedDocument",
    "Problem",
    "Source",
    "UsageError",
    "discover",
    "file_document",
    "load_documents",
    "next_documents",
    "parse_line",
    "valid_tenant",
]

CONTENT_TYPES: dict[str, str] = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    # A JSON *document*, which the ingestor parses into records; JSON lines are the bulk format.
    ".json": "application/json",
}
BULK_SUFFIXES = frozenset({".jsonl", ".ndjson"})
# Formats that are bytes whatever their encoding: never sent as text, even if valid UTF-8.
_BINARY_TYPES = frozenset({"application/pdf"})
# Bytes without a declared type: the ingestor then goes by the file name's extension.
_GENERIC_TYPE = "application/octet-stream"

# The gateway's rules, which the CLI may not import: tenants become the index's tenant names,
# and a doc id must be addressable at GET /v1/documents/{doc_id}.
# What a JSON line may set: DocumentUpserted's own fields, so that a dump of the topic replays.
_LINE_FIELDS = frozenset(DocumentUpserted.model_fields)
# Room for the record's key, headers and batch framing beside the JSON value.
_ENVELOPE_BYTES = 16 * 1024


class UsageError(Exception):
    """The arguments name nothing that can be ingested (exit code 2)."""


def valid_tenant(tenant: str) -> bool:
    """Return whether ``tenant`` is a name the index accepts (letters, digits, _ and -)."""
    return is_valid_tenant(tenant)


@dataclass(frozen=True)
class Source:
    """A file to ingest, and the root its doc ids are relative to.

    Args:
        path: The file, as found (relative to the working directory if given so).
        root: The folder the path was found under; ``path`` relative to it is the doc id.
        bulk: Whether it is JSON lines, one document per line.
    """

    path: Path
    root: Path
    bulk: bool = False

    @property
    def relative_id(self) -> str:
        """The path relative to its root with '/' separators: stable across runs and machines."""
        relative = os.path.relpath(os.path.abspath(self.path), os.path.abspath(self.root))
        return Path(relative).as_posix()


@dataclass(frozen=True)
class Problem:
    """A file or line that is not ingested, and why.

    Args:
        origin: The file, or ``file:line``.
        reason: Why it is not ingested.
        skipped: Not an error (an unsupported or empty file) rather than a document lost.
    """

    origin: str
    reason: str
    skipped: bool = False


@dataclass
class Plan:
    """The files found for the arguments: what to ingest and what is skipped."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)

    def document_count(self) -> int:
        """Return how many documents the sources hold: one per file, one per non-blank line."""
        total = 0
        for source in self.sources:
            if source.bulk:
                with source.path.open("rb") as lines:
                    total += sum(1 for line in lines if line.strip())
            else:
                total += 1
        return total


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _glob_root(pattern: str) -> Path:
    """Return the folder before the first wildcard of ``pattern``: its matches' common root."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def _classify(path: Path, root: Path, plan: Plan) -> None:
    suffix = path.suffix.lower()
    if suffix in BULK_SUFFIXES:
        plan.sources.append(Source(path, root, bulk=True))
    elif suffix in CONTENT_TYPES:
        plan.sources.append(Source(path, root))
    else:
        reason = f"unsupported type {suffix or '(no extension)'}"
        plan.skipped.append(Problem(str(path), reason, skipped=True))


def _walk(folder: Path, root: Path, plan: Plan) -> None:
    """Add every file under ``folder``, recursively, skipping hidden files and folders."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if not _is_hidden(name):
                _classify(Path(current) / name, root, plan)


def discover(arguments: Sequence[str]) -> Plan:
    """Expand files, folders and globs into the files to ingest.

    A file's doc id is its path relative to the root it was found under: the folder given, the
    folder before a glob's first wildcard, or the file's own folder. Globs are expanded here too,
    so quoted globs work, ``**`` included. Hidden files and folders are skipped inside folders
    and globs; a file named explicitly is taken as it is.

    Args:
        arguments: Paths, folders and glob patterns, as given on the command line.

    Raises:
        UsageError: An argument names no existing file or folder and matches nothing.
    """
    plan = Plan()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            _walk(path, path, plan)
        elif path.is_file():
            _classify(path, path.parent, plan)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise UsageError(f"{argument}: no file matches")
            root = _glob_root(argument)
            for match in map(Path, matches):
                if match.is_dir():
                    _walk(match, root, plan)
                elif match.is_file():
                    _classify(match, root, plan)
        else:
            raise UsageError(f"{argument}: no such file or folder")
    # The same file reached twice (a folder and a glob inside it) is one document.
    seen: set[str] = set()
    unique: list[Source] = []
    for source in plan.sources:
        identity = os.path.abspath(source.path)
        if identity not in seen:
            seen.add(identity)
            unique.append(source)
    plan.sources = unique
    return plan


@dataclass(frozen=True)
class PreparedDocument:
    """An upsert ready to publish, with where it came from and its size in bytes."""

    event: DocumentUpserted
    origin: str
    size: int


def _checked_base64(encoded: str) -> str:
    """Return ``encoded`` without line breaks if it is strict base64; raise ValueError if not."""
    compact = "".join(encoded.split())
    if len(compact) % 4:
        raise ValueError("content_base64 is not valid base64 (length not a multiple of 4)")
    try:
        binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as error:
        raise ValueError(f"content_base64 is not valid base64 ({error})") from None
    return compact


def _check_addressable(doc_id: str) -> None:
    if not is_valid_doc_id(doc_id):
        raise ValueError(
            f"doc id {doc_id!r} is not 1..256 characters without control characters "
            "or surrounding spaces"
        )


def _check_size(event: DocumentUpserted) -> None:
    size = len(event.model_dump_json().encode())
    if size > MAX_MESSAGE_BYTES - _ENVELOPE_BYTES:
        raise ValueError(
            f"too large for one Kafka message ({size} bytes encoded; "
            f"the limit is {MAX_MESSAGE_BYTES - _ENVELOPE_BYTES})"
        )


def file_document(source: Source, tenant: str) -> DocumentUpserted | None:
    """Read one file into an upsert; None if it holds nothing but whitespace.

    UTF-8 text goes in ``content``; anything else (a PDF, text in another encoding) goes as
    ``content_base64``, for the ingestor to decode.

    Args:
        source: The file.
        tenant: The tenant of the document.

    Raises:
        ValueError: The document cannot be published as it is (id or size).
    """
    doc_id = source.relative_id
    _check_addressable(doc_id)
    size = source.path.stat().st_size
    # Encoded, a document only grows (JSON escapes, base64), so a file this big never fits: no
    # need to read it into memory to say so.
    if size > MAX_MESSAGE_BYTES - _ENVELOPE_BYTES:
        raise ValueError(f"too large for one Kafka message ({size} bytes)")
    data = source.path.read_bytes()
    content_type = CONTENT_TYPES[source.path.suffix.lower()]
    content, encoded = "", None
    if content_type not in _BINARY_TYPES:
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            encoded = base64.b64encode(data).decode()
        else:
            if not content.strip():
                return None
    elif data:
        encoded = base64.b64encode(data).decode()
    else:
        return None
    event = DocumentUpserted(
        doc_id=doc_id,
        tenant=tenant,
        title=source.path.stem,
        content=content,
        content_base64=encoded,
        content_type=content_type,
        filename=source.path.name,
        source=str(source.path),
    )
    _check_size(event)
    return event


def parse_line(line: str, *, default_id: str, default_source: str, tenant: str) -> DocumentUpserted:
    """Parse one JSON line into an upsert.

    Args:
        line: A JSON object with DocumentUpserted's fields: ``content`` or ``content_base64``
            required, ``doc_id`` optional.
        default_id: The doc id when the line has none (the file and line number).
        default_source: The source when the line has none.
        tenant: The tenant when the line has none.

    Raises:
        ValueError: The line is not a publishable document; the message says why.
    """
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"not a JSON object but {type(fields).__name__}")
    unknown = sorted(set(fields) - _LINE_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {', '.join(unknown)}")
    if fields.get("kind", "upsert") != "upsert":
        raise ValueError("only upserts can be ingested (kind must be 'upsert')")
    fields.setdefault("doc_id", default_id)
    fields.setdefault("source", default_source)
    fields.setdefault("tenant", tenant)
    if not isinstance(fields["tenant"], str) or not valid_tenant(fields["tenant"]):
        raise ValueError(f"invalid tenant {fields['tenant']!r}")
    if not isinstance(fields["doc_id"], str):
        raise ValueError("doc_id must be a string")
    _check_addressable(fields["doc_id"])
    text, encoded = fields.get("content") or "", fields.get("content_base64") or ""
    has_text = isinstance(text, str) and bool(text.strip())
    if has_text == bool(encoded):
        raise ValueError(
            "needs exactly one of content (non-blank text) and content_base64; "
            + ("both were given" if has_text else "neither was given")
        )
    if not isinstance(encoded, str):
        raise ValueError("content_base64 must be a string")
    fields["content_base64"] = _checked_base64(encoded) if encoded else None
    if "content_type" not in fields:
        suffix = Path(str(fields.get("filename") or "")).suffix.lower()
        fields["content_type"] = CONTENT_TYPES.get(
            suffix, _GENERIC_TYPE if encoded else "text/plain"
        )
    try:
        event = DocumentUpserted.model_validate(fields)
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ValueError(reasons) from None
    _check_size(event)
    return event


def load_documents(plan: Plan, tenant: str) -> Iterator[PreparedDocument | Problem]:
    """Yield the plan's documents in order, or a Problem for each that cannot be published.

    Files are read one at a time and JSON lines streamed, so memory holds one document.

    Args:
        plan: What ``discover`` found.
        tenant: The tenant of documents that do not name one.
    """
    for source in plan.sources:
        if not source.bulk:
            try:
                event = file_document(source, tenant)
            except (OSError, ValueError) as error:
                yield Problem(str(source.path), str(error))
                continue
            if event is None:
                yield Problem(str(source.path), "empty", skipped=True)
            else:
                yield PreparedDocument(event, str(source.path), source.path.stat().st_size)
            continue
        try:
            with source.path.open("r", encoding="utf-8-sig") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    origin = f"{source.path}:{number}"
                    try:
                        event = parse_line(
                            line,
                            default_id=f"{source.relative_id}:{number}",
                            default_source=origin,
                            tenant=tenant,
                        )
                    except ValueError as error:
                        yield Problem(origin, str(error))
                        continue
                    yield PreparedDocument(event, origin, len(line.encode()))
        except (OSError, UnicodeDecodeError) as error:
            yield Problem(str(source.path), f"unreadable ({error})")


def next_documents(
    documents: Iterator[PreparedDocument | Problem], max_count: int, max_bytes: int
) -> list[PreparedDocument | Problem]:
    """Take the next items of ``load_documents``, to read several in one trip to a worker thread.

    Stops after ``max_count`` items, or after the document that brings their size to
    ``max_bytes`` or more, so a trip holds at most one document past that size. An empty list
    means none are left.

    Args:
        documents: What ``load_documents`` returned, partly consumed.
        max_count: The most items to take.
        max_bytes: The size, in bytes, after which no further document is taken.
    """
    taken: list[PreparedDocument | Problem] = []
    size = 0
    for item in documents:
        taken.append(item)
        size += item.size if isinstance(item, PreparedDocument) else 0
        if len(taken) >= max_count or size >= max_bytes:
            break
    return taken
