"""The gateway's Prometheus instruments, beside the ones every service has."""

from __future__ import annotations

from ragstream_common.metrics import ServiceMetrics

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """HTTP latency, queries in flight, timeouts and reply routing, on one registry.

    Args:
        service: The service name, the constant ``service`` label.
    """

    def __init__(self, service: str) -> None:
        self.service = ServiceMetrics(service)
        self.name = service
        self.request_seconds = self.service.histogram(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route template and status code.",
            ["method", "route", "status"],
        )
        self.queries_in_flight = self.service.gauge(
            "queries_in_flight", "Queries waiting for their answer on this replica."
        )
        self.query_timeouts = self.service.counter(
            "query_timeouts_total", "Queries that got no answer within the query timeout."
        )
        self.answers_seen = self.service.counter(
            "answers_seen_total",
            "Answers read from the answers topic, by outcome: resolved (a request of this "
            "replica), foreign (another replica's), late (no request waits for it any more).",
            ["outcome"],
        )
        self.status_events = self.service.counter(
            "status_events_total",
            "document-status events read, by outcome: applied, stale, rejected (unreadable).",
            ["outcome"],
        )

    def answer_seen(self, outcome: str) -> None:
        """Count one answer read from the answers topic with ``outcome``."""
        self.answers_seen.labels(self.name, outcome).inc()

    def status_event(self, outcome: str) -> None:
        """Count one document-status event read with ``outcome``."""
        self.status_events.labels(self.name, outcome).inc()
