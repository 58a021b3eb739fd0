"""Wiring: the embedder's broker, router, model, embedding cache, metrics and health endpoints.

Nothing runs at import: the lifespan loads the model, in a worker thread, and builds the Redis
client of the cache (when ``redis_url`` is set) before the broker starts consuming.
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
from ragstream_embedder.adapters.cache import RedisEmbeddingCache, redacted_url
from ragstream_embedder.adapters.model import load_model
from ragstream_embedder.cache import EmbeddingCache
from ragstream_embedder.handlers import (
    CONSUMER_GROUP,
    Dependencies,
    EmbeddingModelPort,
    build_router,
)
from ragstream_embedder.settings import EmbedderSettings

__all__ = ["create_app"]

_log = get_logger(__name__)


def create_app(
    settings: EmbedderSettings | None = None,
    *,
    model: EmbeddingModelPort | None = None,
    cache: EmbeddingCache | None = None,
) -> AsgiFastStream:
    """Build the embedder: a worker consuming ``chunks``, serving ``/metrics`` and ``/healthz``.

    Args:
        settings: The service's settings; read from the environment when None.
        model: An embedding model to use instead of loading all-MiniLM-L6-v2 (for tests).
        cache: An embedding cache to use instead of Redis at ``settings.redis_url`` (for tests).
    """
    settings = settings if settings is not None else EmbedderSettings()
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(settings=settings, metrics=metrics, broker=broker, model=model, cache=cache)
    broker.include_router(build_router(deps))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        redis_cache = None
        if deps.cache is None and settings.redis_url is not None:
            redis_cache = RedisEmbeddingCache.from_url(
                settings.redis_url,
                ttl_s=settings.embedding_cache_ttl_s,
                timeout_s=settings.embedding_cache_timeout_s,
            )
            deps.cache = redis_cache
            # Only a warning when down: the embedder works without its cache, at a cost.
            reachable = await redis_cache.ping()
            log = _log.info if reachable else _log.warning
            log("embedding_cache", url=redacted_url(settings.redis_url), reachable=reachable)
        try:
            if deps.model is None:
                # Loading takes seconds of CPU; a thread keeps the event loop (and signals)
                # responsive.
                with metrics.time_stage("model_load"):
                    deps.model = await asyncio.to_thread(load_model, settings)
                _log.info("model_loaded", model=deps.model.version)
            yield
        finally:
            if redis_cache is not None:
                deps.cache = None
                await redis_cache.aclose()

    return worker_app(
        broker, metrics, lifespan=lifespan, settings=settings, lag_groups=[CONSUMER_GROUP]
    )
