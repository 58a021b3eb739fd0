"""The table ``ragstream status`` prints: infrastructure and services, where they run."""

from __future__ import annotations

from pathlib import Path

import httpx
from rich.table import Table

from ragstream_cli.stack import kafka_status, redis_status, weaviate_status
from ragstream_cli.stack.platform import ServiceSpec

__all__ = ["stack_status_table"]


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
    for spec in services:
        table.add_row(spec.name, _health(spec.url), "", spec.url, "")
    return table
