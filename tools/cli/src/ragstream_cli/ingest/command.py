"""The ``ragstream ingest`` command: arguments, the run, the summary and the exit code."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape

from ragstream_cli.ingest.display import DisplayMode, human_bytes
from ragstream_cli.ingest.publisher import IngestError, IngestOptions, IngestReport, ingest
from ragstream_cli.ingest.sources import (
    BULK_SUFFIXES,
    CONTENT_TYPES,
    UsageError,
    discover,
    valid_tenant,
)

__all__ = [
    "DESCRIPTION",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_arguments",
    "run",
    "summary_lines",
]

DESCRIPTION = """\
Publish documents to the platform in bulk: files (.md .markdown .txt .html .htm .pdf .json),
folders (recursively, hidden files skipped) and globs (quoted globs work, ** too). A file's doc id
is its path relative to the folder (or the glob's fixed part) it was found under, so ingesting the
same tree again replaces the same documents. .jsonl/.ndjson files hold one document a line: a JSON
object with doc_id (else file:line), title, content or content_base64, content_type, filename,
source, tags, tenant.

With --wait, follows every document until it is indexed or failed, then prints documents/s and
chunks/s. Exit code: 0 all published (and indexed, with --wait); 1 failures or timeout; 2 usage.

examples:
  ragstream ingest samples/corpus --wait
  ragstream ingest 'docs/**/*.md' notes.jsonl --tenant acme
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Enough to see which documents are missing without burying the summary.
_MAX_LISTED = 20


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}" if seconds > 0 else "n/a"


def _listed(items: Iterable[str]) -> list[str]:
    items = list(items)
    lines = [f"  {item}" for item in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"  ... and {len(items) - _MAX_LISTED} more")
    return lines


def summary_lines(report: IngestReport) -> list[str]:
    """Return the summary printed at the end of a run, one line per item.

    Args:
        report: The finished run.
    """
    c = report.counters
    lines: list[str] = []
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped)} files:")
        lines += _listed(f"{p.origin}: {p.reason}" for p in report.skipped)
    if report.invalid:
        lines.append(f"Not published, {len(report.invalid)} documents:")
        lines += _listed(f"{p.origin}: {p.reason}" for p in report.invalid)
    if c.repeats:
        lines.append(f"{c.repeats} repeated doc ids: the last occurrence of each wins.")
    lines.append(
        f"Published {c.published} documents ({human_bytes(c.published_bytes)}) in "
        f"{report.publish_seconds:.2f} s: {_rate(c.published, report.publish_seconds)} "
        "documents/s."
    )
    if not report.wait:
        lines.append("Not waiting for the index (add --wait): chunks/s n/a.")
        return lines
    if report.failed:
        lines.append(f"Failed, {len(report.failed)} documents:")
        lines += _listed(f"{p.origin}: {p.reason}" for p in report.failed)
    if report.timed_out:
        lines.append(f"Not indexed in time, {len(report.timed_out)} documents:")
        lines += _listed(report.timed_out)
    seconds = report.total_seconds
    lines.append(
        f"Indexed {c.indexed} of {c.documents} documents, {c.chunks} chunks, in {seconds:.2f} s "
        f"end to end: {_rate(c.indexed, seconds)} documents/s, {_rate(c.chunks, seconds)} "
        "chunks/s."
    )
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``ingest`` subcommand's arguments on ``parser``."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files, folders (recursive) or globs; .jsonl/.ndjson files hold one document a line",
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait until every document is indexed (or failed)"
    )
    parser.add_argument("--tenant", default="default", help="tenant of the documents")
    parser.add_argument(
        "--kafka",
        default=None,
        metavar="BOOTSTRAP",
        help="Kafka bootstrap servers (default: RAGSTREAM_KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds --wait waits for the index after publishing (default 600)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="print the summary only, no progress"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ragstream ingest`` with parsed ``args``: print the summary, return the exit code.

    Args:
        args: What ``add_arguments`` declared.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def usage(message: str) -> int:
        err.print(f"[red]error:[/] {escape(message)}")
        return EXIT_USAGE

    if not valid_tenant(args.tenant):
        return usage(f"invalid tenant {args.tenant!r}: letters, digits, '_' and '-' only")
    if args.timeout <= 0:
        return usage("--timeout must be positive")
    try:
        plan = discover(args.paths)
    except UsageError as error:
        return usage(str(error))
    if not plan.sources:
        for problem in plan.skipped:
            err.print(f"  {escape(problem.origin)}: {escape(problem.reason)}")
        known = " ".join(sorted({*CONTENT_TYPES, *BULK_SUFFIXES}))
        return usage(f"no supported documents found ({known})")
    mode: DisplayMode = "off" if args.no_progress else "bar" if err.is_terminal else "lines"
    options = IngestOptions(
        kafka=args.kafka, tenant=args.tenant, wait=args.wait, timeout_s=args.timeout
    )
    try:
        report = asyncio.run(ingest(plan, options, mode))
    except IngestError as error:
        err.print(f"[red]error:[/] {escape(str(error))}")
        return EXIT_FAILED
    print("\n".join(summary_lines(report)))
    return EXIT_OK if report.succeeded else EXIT_FAILED
