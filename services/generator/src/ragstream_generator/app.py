"""Wiring: the broker, the router, the answering model and the lifespan that builds it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from faststream.asgi import AsgiFastStream

from ragstream_common.logging import get_logger
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_generator.budget import SpendStore
from ragstream_generator.cache import AnswerCache
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.handlers import GROUP, build_router
from ragstream_generator.ports import AnswerModel
from ragstream_generator.prompts import load_prompt
from ragstream_generator.settings import GeneratorSettings

__all__ = ["create_app"]

_log = get_logger(__name__)


def create_app(
    settings: GeneratorSettings | None = None,
    *,
    llm: AnswerModel | None = None,
    answer_cache: AnswerCache | None = None,
    spend_store: SpendStore | None = None,
) -> AsgiFastStream:
    """Build the generator app; the LiteLLM Router is built when it starts, not here.

    Args:
        settings: The settings; read from the environment when None.
        llm: An answering model to use instead of the LiteLLM Router (tests).
        answer_cache: An answer cache to use instead of Redis at ``settings.redis_url`` (tests).
        spend_store: A spend store to use instead of Redis, when budgets are set (tests).
    """
    settings = settings or GeneratorSettings()
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(
        settings=settings,
        metrics=metrics,
        broker=broker,
        llm_port=llm,
        answer_cache=answer_cache,
        spend_store=spend_store,
    )
    broker.include_router(build_router(deps))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        # Runs before the broker starts consuming, so no context meets a half-built service.
        async with AsyncExitStack() as stack:
            # A prompt version that is not packaged stops the service here, not at the first query.
            load_prompt(settings.prompt_version)
            if deps.llm_port is None:
                deps.llm_port = await _build_router_model(settings, stack)
            # One client (one connection pool) serves the answer caches and the spend store.
            redis = None
            if settings.redis_url is not None and (
                deps.answer_cache is None or (deps.spend_store is None and settings.budgets_enabled)
            ):
                from ragstream_generator.adapters.redis_client import redis_client

                redis = redis_client(settings.redis_url, timeout_s=settings.answer_cache_timeout_s)
                stack.push_async_callback(redis.aclose)
            if deps.answer_cache is None and redis is not None:
                from ragstream_generator.adapters.answer_cache import RedisAnswerCache

                answer_cache = RedisAnswerCache(
                    redis,
                    ttl_s=settings.answer_cache_ttl_s,
                    max_entries=settings.semantic_cache_entries,
                )
                deps.answer_cache = answer_cache
                # Reported, not required: an unreachable Redis only means answers are not cached.
                _log.info("answer_cache", reachable=await answer_cache.ping())
            if deps.spend_store is None and settings.budgets_enabled and redis is not None:
                from ragstream_generator.adapters.spend import RedisSpendStore

                deps.spend_store = RedisSpendStore(redis)
            _log.info("generator_ready", model_group=settings.model_group)
            yield

    return worker_app(broker, metrics, lifespan=lifespan, settings=settings, lag_groups=[GROUP])


async def _build_router_model(settings: GeneratorSettings, stack: AsyncExitStack) -> AnswerModel:
    started = time.perf_counter()
    # Importing LiteLLM takes seconds of CPU; a thread keeps the loop free meanwhile, and the
    # import happens here rather than at module import so tests and tools never pay for it.
    from ragstream_generator.adapters import llm as llm_adapter

    model = await asyncio.to_thread(llm_adapter.build_answer_model, settings)
    stack.push_async_callback(model.aclose)
    built = time.perf_counter()
    if settings.warm_up:
        await model.warm_up()
    _log.info(
        "llm_router_ready",
        build_s=round(built - started, 3),
        warm_up_s=round(time.perf_counter() - built, 3),
    )
    return model
