"""The HTTP shell around a worker service: ``/metrics``, ``/healthz``, and how it is served."""

from __future__ import annotations

from typing import Any

import uvicorn
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.kafka import KafkaBroker

from ragstream_common.logging import configure_logging
from ragstream_common.metrics import ServiceMetrics, metrics_asgi_app
from ragstream_common.settings import ServiceSettings

__all__ = ["serve", "worker_app"]


def worker_app(
    broker: KafkaBroker, metrics: ServiceMetrics, *, lifespan: Any = None
) -> AsgiFastStream:
    """Wrap ``broker`` in an ASGI app exposing ``/metrics`` and ``/healthz``.

    Args:
        broker: The service's broker, with its routers included.
        metrics: The service's metrics; its registry is served at ``/metrics``.
        lifespan: An async context manager factory that builds and closes the service's clients.
    """
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/metrics", metrics_asgi_app(metrics.registry)),
            # Healthy means the broker answers; a service that lost Kafka should be restarted.
            ("/healthz", make_ping_asgi(broker, timeout=5.0, include_in_schema=False)),
        ],
        lifespan=lifespan,
    )


def serve(app: Any, settings: ServiceSettings) -> None:
    """Configure logging and serve ``app`` with uvicorn on the settings' host and port.

    Args:
        app: An ASGI application.
        settings: The service's settings (name, host, port, log format).
    """
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
