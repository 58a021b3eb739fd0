"""What ``ragstream status`` prints: where things run, then how the pipeline is doing."""

from __future__ import annotations

from pathlib import Path

import httpx
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ragstream_cli.operations import OperationsSnapshot, lag_summary
from ragstream_cli.stack import kafka_status, redis_status, weaviate_status
from ragstream_cli.stack.platform import ServiceSpec
from ragstream_cli.stack.prometheus import prometheus_status_row

__all__ = ["operations_view", "stack_status_table"]


def _health(url: str) -> str:
    try:
        response = httpx.get(f"{url}/healthz", timeout=2.0)
    except httpx.HTTPError:
        return "down"
    return "healthy" if response.is_success else f"unhealthy ({response.status_code})"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stack_status_table(services: tuple[ServiceSpec, ...]) -> Table:
    """Return a table of Kafka, Weaviate, Redis and each service: state, pid, endpoint.

    Args:
        services: The services to probe on their ports.
    """
    table = Table("component", "state", "pid", "endpoint", "log", title="ragstream")
    for component in (kafka_status(), weaviate_status(), redis_status()):
        state = "running" if component.running else "stopped"
        if component.running and not component.managed:
            state += " (not started by this checkout)"
        if not component.installed:
            state += ", not installed"
        table.add_row(
            f"{component.name} {component.version}",
            state,
            str(component.pid or ""),
            component.endpoint,
            _relative(component.log_path),
        )
    if (prometheus := prometheus_status_row()) is not None:
        table.add_row(*prometheus)
    for spec in services:
        table.add_row(spec.name, _health(spec.url), "", spec.url, "")
    return table


def operations_view(snapshot: OperationsSnapshot) -> RenderableType:
    """Return the operations view: topics with throughput and lag, freshness, index, dead letters.

    Args:
        snapshot: What ``read_operations`` read.
    """
    topics = Table("topic", "end offset", "msg/s", "lag by group", title="topics")
    for activity in snapshot.topics:
        rate = "" if activity.messages_per_s is None else f"{activity.messages_per_s:.1f}"
        topics.add_row(
            activity.topic, str(activity.end_offset_total), rate, lag_summary(activity.lag_by_group)
        )
    parts: list[RenderableType] = [topics]

    if snapshot.freshness_p50_s is None:
        parts.append(Text("freshness p50 (publish -> indexed): no reading from the retriever"))
    else:
        parts.append(Text(f"freshness p50 (publish -> indexed): {snapshot.freshness_p50_s:.2f} s"))

    if snapshot.index_sizes is None:
        parts.append(Text("index: Weaviate did not answer"))
    else:
        index = Table("collection", "objects", title="index")
        for collection, count in snapshot.index_sizes.items():
            index.add_row(collection, str(count))
        parts.append(index)

    if snapshot.dead_letters:
        letters = Table("time (UTC)", "topic", "error type", "error", title="latest dead letters")
        for letter in snapshot.dead_letters:
            letters.add_row(
                letter.time.strftime("%Y-%m-%d %H:%M:%S"),
                letter.topic,
                letter.error_type,
                letter.error,
            )
        parts.append(letters)
    else:
        parts.append(Text("dead letters: none"))
    return Group(*parts)
