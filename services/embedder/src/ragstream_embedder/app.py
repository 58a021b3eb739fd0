"""Wiring: the embedder's broker, router, model, metrics and health endpoints.

Nothing runs at import: the model is loaded by the lifespan, in a worker thread, before the broker
starts consuming.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream

from ragstream_common.logging import get_logger
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_embedder.adapters.model import load_model
from ragstream_embedder.handlers import Dependencies, EmbeddingModelPort, build_router
from ragstream_embedder.settings import EmbedderSettings

__all__ = ["create_app"]

_log = get_logger(__name__)


def create_app(
    settings: EmbedderSettings | None = None, *, model: EmbeddingModelPort | None = None
) -> AsgiFastStream:
    """Build the embedder: a worker consuming ``chunks``, serving ``/metrics`` and ``/healthz``.

    Args:
        settings: The service's settings; read from the environment when None.
        model: An embedding model to use instead of loading all-MiniLM-L6-v2 (for tests).
    """
    settings = settings if settings is not None else EmbedderSettings()
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(settings=settings, metrics=metrics, broker=broker, model=model)
    broker.include_router(build_router(deps))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        if deps.model is None:
            # Loading takes seconds of CPU; a thread keeps the event loop (and signals) responsive.
            with metrics.time_stage("model_load"):
                deps.model = await asyncio.to_thread(load_model, settings)
            _log.info("model_loaded", model=deps.model.version)
        yield

    return worker_app(broker, metrics, lifespan=lifespan)
