"""``ragstream``: run the local platform (``up``, ``down``, ``status``), feed it and ask it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ragstream_cli import ingest
from ragstream_cli.operations_readings import read_operations
from ragstream_cli.samples import SAMPLE_QUESTION, ask, load_samples
from ragstream_cli.stack import kafka_bootstrap, kafka_status, weaviate_api_key, weaviate_url
from ragstream_cli.stack.errors import StackError
from ragstream_cli.stack.paths import repo_root
from ragstream_cli.stack.platform import SERVICES, ensure_platform, stop_platform
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.prometheus import prometheus_requested
from ragstream_cli.status_view import operations_view, stack_status_table

# Wide enough for URLs and paths when the output is a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 140)


def _up(args: argparse.Namespace) -> int:
    reporter = Reporter()
    platform = ensure_platform(
        reporter, with_prometheus=args.with_prometheus or prometheus_requested()
    )
    if not args.no_samples:
        corpus = repo_root() / "samples" / "corpus"
        with reporter.step(f"Ingesting the sample corpus ({corpus})"):
            loaded = load_samples(platform.gateway_url, corpus)
        reporter.info(
            f"{loaded.documents} documents, {loaded.chunks} chunks indexed"
            f" in {loaded.seconds:.1f} s"
        )
        answer = ask(platform.gateway_url, SAMPLE_QUESTION)
        _print_answer(SAMPLE_QUESTION, answer)
    console.print(
        Panel.fit(
            f"Gateway: [bold]{platform.gateway_url}[/]  (API docs: {platform.gateway_url}/docs)\n"
            f"Kafka: {platform.kafka_bootstrap}   Weaviate: {platform.weaviate_url}\n"
            "Stop everything with [bold]make down[/].",
            title="ragstream is up",
        )
    )
    return 0


def _print_answer(question: str, answer: dict[str, Any]) -> None:
    console.print(f"[bold]Q:[/] {question}")
    console.print(f"[bold]A:[/] {answer['answer']}")
    table = Table("n", "document", "chunk", "score", "snippet", title="citations")
    for citation in answer.get("citations", []):
        table.add_row(
            str(citation["n"]),
            citation["title"] or citation["doc_id"],
            citation["chunk_id"],
            f"{citation['score']:.3f}",
            citation["snippet"][:80],
        )
    console.print(table)
    console.print(
        f"model: {answer['model']}  cached: {answer['cached']}  timings: {answer['timings']}"
    )


def _down(args: argparse.Namespace) -> int:
    stop_platform(Reporter(), infrastructure=not args.services_only)
    return 0


def _status(args: argparse.Namespace) -> int:
    console.print(stack_status_table(SERVICES))
    if not kafka_status().running:
        console.print("[dim]Kafka is not running: no operations view.[/]")
        return 0
    retriever = next(spec for spec in SERVICES if spec.name == "retriever")
    reading = read_operations(
        kafka_bootstrap(),
        interval_s=args.interval,
        retriever_url=retriever.url,
        weaviate_url=weaviate_url(),
        weaviate_api_key=weaviate_api_key(),
    )
    try:
        # A broker that accepts connections but does not answer must not hold the command up.
        snapshot = asyncio.run(asyncio.wait_for(reading, timeout=args.interval + 4.0))
    except Exception as error:
        console.print(
            f"[yellow]Kafka did not answer ({type(error).__name__}): no operations view.[/]"
        )
        return 0
    console.print(operations_view(snapshot))
    return 0


def _query(args: argparse.Namespace) -> int:
    answer = ask(args.gateway, args.question)
    if args.json:
        console.print_json(json.dumps(answer))
    else:
        _print_answer(args.question, answer)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``ragstream`` command."""
    parser = argparse.ArgumentParser(prog="ragstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="install what is missing and start the whole platform")
    up.add_argument("--no-samples", action="store_true", help="skip the sample corpus and query")
    up.add_argument(
        "--with-prometheus",
        action="store_true",
        help="also run Prometheus on 127.0.0.1:9090 (or set RAGSTREAM_PROMETHEUS=1)",
    )
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop what this checkout started")
    down.add_argument("--services-only", action="store_true", help="leave Kafka and Weaviate up")
    down.set_defaults(run=_down)
    status = commands.add_parser(
        "status", help="show what runs where and, with Kafka up, how the pipeline is doing"
    )
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between the two samples that give the topics' messages per second",
    )
    status.set_defaults(run=_status)
    query = commands.add_parser("query", help="ask the gateway a question")
    query.add_argument("question")
    query.add_argument("--gateway", default="http://127.0.0.1:8000")
    query.add_argument("--json", action="store_true", help="print the raw JSON answer")
    query.set_defaults(run=_query)
    bulk = commands.add_parser(
        "ingest",
        help="publish files, folders, globs and JSON lines to the platform, in bulk",
        description=ingest.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_arguments(bulk)
    bulk.set_defaults(run=ingest.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``ragstream`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except StackError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
