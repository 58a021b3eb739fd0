"""Wiring: the broker, the router, the ports and the lifespan that connects them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from faststream.asgi import AsgiFastStream

from ragstream_common.logging import get_logger
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.handlers import build_router
from ragstream_retriever.ports import ChunkIndex, QueryEmbedder
from ragstream_retriever.settings import RetrieverSettings

__all__ = ["create_app"]

_log = get_logger(__name__)


def create_app(
    settings: RetrieverSettings | None = None,
    *,
    index: ChunkIndex | None = None,
    model: QueryEmbedder | None = None,
) -> AsgiFastStream:
    """Build the retriever app; Weaviate and the model are connected when it starts, not here.

    Args:
        settings: The settings; read from the environment when None.
        index: A chunk index to use instead of connecting to Weaviate (tests).
        model: A query model to use instead of loading all-MiniLM-L6-v2 (tests).
    """
    settings = settings or RetrieverSettings()
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(
        settings=settings, metrics=metrics, broker=broker, index_port=index, model_port=model
    )
    broker.include_router(build_router(deps))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        # Runs before the broker starts consuming, so no message meets a half-built service.
        async with AsyncExitStack() as stack:
            if deps.index_port is None:
                deps.index_port = await _connect_weaviate(settings, stack)
            if deps.model_port is None and settings.search_role:
                deps.model_port = await _load_model(settings)
            _log.info(
                "retriever_ready",
                index_role=settings.index_role,
                search_role=settings.search_role,
                collection=settings.collection,
            )
            yield

    # Each role's group, when the role runs here: they scale on their own lag.
    lag_groups = [
        group
        for group, enabled in (
            (settings.index_group_id, settings.index_role),
            (settings.search_group_id, settings.search_role),
        )
        if enabled
    ]
    return worker_app(broker, metrics, lifespan=lifespan, settings=settings, lag_groups=lag_groups)


async def _connect_weaviate(settings: RetrieverSettings, stack: AsyncExitStack) -> ChunkIndex:
    # Imported here so that building an app for tests never imports the Weaviate SDK.
    from ragstream_retriever.adapters.weaviate_index import WeaviateIndex

    index = WeaviateIndex.from_settings(settings)
    stack.push_async_callback(index.close)
    await index.connect()
    await index.ensure_collections()
    return index


async def _load_model(settings: RetrieverSettings) -> QueryEmbedder:
    from ragstream_retriever.adapters.embedding_model import load_query_model

    return await load_query_model(settings.embedding_dimensions, settings.model_threads)
