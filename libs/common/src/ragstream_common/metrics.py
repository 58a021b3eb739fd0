"""Prometheus metrics under one naming scheme: ``ragstream_<what>_<unit>``, labelled by service.

Each service builds one ``ServiceMetrics`` on its own registry (so tests can build many apps in one
process) and adds its own instruments through ``histogram``/``counter``/``gauge``, which apply the
scheme. FastStream's Prometheus middleware adds the per-topic message counters and latencies
(``faststream_*``) beside these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property

from faststream.asgi.types import ASGIApp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app

__all__ = ["LATENCY_BUCKETS", "ServiceMetrics", "metrics_asgi_app"]

# From one millisecond (a cache hit) to a minute (a cold model or a long document).
LATENCY_BUCKETS: Sequence[float] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ServiceMetrics:
    """The instruments every service has, and a factory for its own.

    Args:
        service: The service name, applied as a constant ``service`` label.
        registry: Where the instruments live; a fresh one per app by default.
    """

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stage_seconds = self.histogram(
            "stage_duration_seconds", "Time spent in one processing stage.", ["stage"]
        )
        self.dead_letters = self.counter(
            "dead_letters_total",
            "Messages sent to a dead-letter topic, by source topic and error type.",
            ["topic", "error_type"],
        )
        self.events_published = self.counter(
            "events_published_total", "Events this service published, by topic.", ["topic"]
        )
        # Set by ragstream_common.lag for the consumer groups the service owns (none: no samples).
        self.consumer_lag = self.gauge(
            "consumer_lag",
            "Records not yet committed by a consumer group: end offset minus committed offset.",
            ["group", "topic", "partition"],
        )
        self.lag_refresh_failures = self.counter(
            "consumer_lag_refresh_failures_total",
            "Consumer lag refreshes that failed (Kafka unreachable); the gauge keeps its last value.",
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """Create a histogram named ``ragstream_<name>`` with a ``service`` label."""
        return Histogram(
            f"ragstream_{name}",
            documentation,
            ["service", *labels],
            registry=self.registry,
            buckets=buckets,
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """Create a counter named ``ragstream_<name>`` with a ``service`` label."""
        return Counter(
            f"ragstream_{name}", documentation, ["service", *labels], registry=self.registry
        )

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """Create a gauge named ``ragstream_<name>`` with a ``service`` label."""
        return Gauge(
            f"ragstream_{name}", documentation, ["service", *labels], registry=self.registry
        )

    @cached_property
    def _drift_baseline_ready(self) -> Gauge:
        # Made on first use: only the services with drift detectors expose it.
        return self.gauge(
            "drift_baseline_ready",
            "1 once a drift detector's baseline is full and frozen (its figures are defined), "
            "else 0.",
            ["detector"],
        )

    def drift_baseline(self, detector: str, ready: bool) -> None:
        """Say whether ``detector``'s baseline is full (its alert may then fire)."""
        self._drift_baseline_ready.labels(self.service, detector).set(1 if ready else 0)

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """Observe the duration of the enclosed block as ``stage``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(self.service, stage).observe(time.perf_counter() - started)


def metrics_asgi_app(registry: CollectorRegistry) -> ASGIApp:
    """Return an ASGI app serving ``registry`` in the Prometheus text format."""
    app: ASGIApp = make_asgi_app(registry)
    return app
