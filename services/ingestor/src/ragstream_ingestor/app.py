"""Wiring: the ingestor's broker, router, metrics and health endpoints. Nothing runs at import."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_ingestor.handlers import Dependencies, build_router
from ragstream_ingestor.settings import IngestorSettings

__all__ = ["create_app"]


def create_app(settings: IngestorSettings | None = None) -> AsgiFastStream:
    """Build the ingestor: a worker consuming ``documents``, serving ``/metrics`` and ``/healthz``.

    The ingestor holds no clients beyond the broker, so it needs no lifespan of its own.

    Args:
        settings: The service's settings; read from the environment when None.
    """
    settings = settings if settings is not None else IngestorSettings()
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(settings=settings, metrics=metrics, broker=broker)
    broker.include_router(build_router(deps))
    return worker_app(broker, metrics)
