"""The gateway's Prometheus instruments, beside the ones every service has."""

from __future__ import annotations

from ragstream_common.metrics import ServiceMetrics

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """HTTP latency, queries in flight, timeouts, time to first delta and reply routing.

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
            "replica), delta (a piece of a streamed answer of this replica), foreign (another "
            "replica's), late (no request waits for it any more).",
            ["outcome"],
        )
        self.time_to_first_delta = self.service.histogram(
            "gateway_ttft_seconds",
            "Streamed queries: from the request's arrival to the first delta sent to the client.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.status_events = self.service.counter(
            "status_events_total",
            "document-status events read, by outcome: applied, stale, rejected (unreadable).",
            ["outcome"],
        )
        # A histogram of 1..5, so sum/count is the mean rating per model and prompt version.
        self.feedback_ratings = self.service.histogram(
            "feedback_rating",
            "Users' ratings of answers (1 useless .. 5 exactly right), by model and prompt.",
            ["model", "prompt_version"],
            buckets=(1, 2, 3, 4, 5),
        )

    def answer_seen(self, outcome: str) -> None:
        """Count one answer read from the answers topic with ``outcome``."""
        self.answers_seen.labels(self.name, outcome).inc()

    def first_delta(self, seconds: float) -> None:
        """Record one streamed query's time to its first delta."""
        self.time_to_first_delta.labels(self.name).observe(seconds)

    def feedback(self, model: str, prompt_version: str | None, rating: int) -> None:
        """Count one rating of an answer by ``model`` under ``prompt_version``."""
        self.feedback_ratings.labels(self.name, model, prompt_version or "none").observe(rating)

    def status_event(self, outcome: str) -> None:
        """Count one document-status event read with ``outcome``."""
        self.status_events.labels(self.name, outcome).inc()
