"""LiteLLM's call cache and the spend store on the stack's real Redis, with the fake OpenAI server.

A repeated prompt to a remote tier is answered from Redis without an HTTP request; another tenant
asking the same misses; spend adds up per tenant and day, and expires.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from ragstream_common.events import ContextRetrieved, QueryRequested, RetrievedChunk
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_fakellm import RunningServer, run_in_thread
from ragstream_generator.adapters.llm import build_answer_model
from ragstream_generator.adapters.spend import RedisSpendStore
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.handlers import answer_context
from ragstream_generator.settings import GeneratorSettings

pytestmark = [
    pytest.mark.stack,
    # LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
    pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning"),
]

# Where the stack's Redis listens (ragstream_cli.stack.redis_url(), started by conftest.py).
REDIS_URL = "redis://127.0.0.1:6379/0"
CHUNK = RetrievedChunk(
    chunk_id="ops#0",
    doc_id="ops",
    title="Operations",
    text="The gateway listens on port 8000. Metrics are scraped every 15 seconds.",
    position=0,
    score=0.8,
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One fake server for the module, on a free loopback port."""
    with run_in_thread() as running:
        yield running


@pytest.fixture
def requests(server: RunningServer) -> Iterator[httpx.Client]:
    """A client to the fake server's control API, reset before and after each test."""
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        client.post("/control/reset").raise_for_status()
        yield client
        client.post("/control/reset").raise_for_status()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client to the stack's Redis, for looking at what was stored."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _count(client: httpx.Client) -> int:
    return sum(client.get("/control/stats").json()["requests"].values())


def _deps(tmp_path: Path, server: RunningServer) -> Dependencies:
    path = tmp_path / "router.yaml"
    path.write_text(
        "model_list:\n  - model_name: answerer\n    litellm_params:\n"
        f"      model: openai/primary\n      api_base: {server.api_base}\n      api_key: dummy\n"
        "      input_cost_per_token: 1.0e-6\n",
        encoding="utf-8",
    )
    settings = GeneratorSettings(router_config=path, warm_up=False, redis_url=REDIS_URL)
    metrics = ServiceMetrics("generator")
    return Dependencies(
        settings=settings,
        metrics=metrics,
        broker=create_broker(settings, metrics),
        llm_port=build_answer_model(settings),
    )


def _context(tenant: str) -> ContextRetrieved:
    return ContextRetrieved(
        query=QueryRequested(text="Which port?", reply_to="gw", tenant=tenant), chunks=[CHUNK]
    )


async def _stored(redis: Redis, tenant: str) -> list[bytes | str]:
    # LiteLLM writes the entry in a task of its own, just after answering: wait for it.
    for _ in range(50):
        if keys := await redis.keys(f"ragstream:llm:{tenant}:*"):
            return keys
        await asyncio.sleep(0.05)
    return []


def _forget_this_replicas_memory() -> None:
    # LiteLLM keeps a process-wide in-memory copy in front of Redis. Emptying it makes this
    # process behave as another replica would: only the shared Redis can serve the repeat.
    from litellm.caching.caching_handler import in_memory_cache_obj

    in_memory_cache_obj.flush_cache()


class TestLiteLLMCallCache:
    async def test_repeated_prompt_is_served_from_redis_without_a_request(
        self, server: RunningServer, requests: httpx.Client, redis: Redis, tmp_path: Path
    ) -> None:
        """The same prompt from the same tenant reaches the server once; the repeat is `cached`."""
        deps = _deps(tmp_path, server)
        tenant = f"t-{uuid.uuid4().hex[:8]}"

        first = await answer_context(_context(tenant), deps)
        assert await _stored(redis, tenant)
        _forget_this_replicas_memory()
        second = await answer_context(_context(tenant), deps)

        assert _count(requests) == 1
        assert (first.cached, second.cached) == (False, True)
        assert second.model == first.model == "openai/primary"
        assert second.answer == first.answer
        assert second.usage is not None
        assert second.usage.cost_usd == 0.0
        hits = deps.metrics.registry.get_sample_value(
            "ragstream_answer_cache_hits_total",
            {"service": "generator", "tenant": tenant, "kind": "llm"},
        )
        assert hits == 1

    async def test_same_prompt_from_another_tenant_misses(
        self, server: RunningServer, requests: httpx.Client, redis: Redis, tmp_path: Path
    ) -> None:
        """Tenants never share an entry: the second tenant's identical prompt is a request."""
        deps = _deps(tmp_path, server)
        first, other = (f"t-{uuid.uuid4().hex[:8]}" for _ in range(2))

        await answer_context(_context(first), deps)
        assert await _stored(redis, first)
        answer = await answer_context(_context(other), deps)

        assert answer.cached is False
        assert _count(requests) == 2


class TestRedisSpendStore:
    async def test_spend_adds_up_per_tenant_and_day_and_expires(self, redis: Redis) -> None:
        """Additions sum per tenant and day, other tenants and days stay apart, keys expire."""
        store = RedisSpendStore.from_url(REDIS_URL, timeout_s=1.0)
        tenant = f"t:{uuid.uuid4().hex[:8]}"
        try:
            await store.add(tenant, "2026-03-01", 0.25)
            await store.add(tenant, "2026-03-01", 0.5)

            assert await store.spent(tenant, "2026-03-01") == pytest.approx(0.75)
            assert await store.spent(tenant, "2026-03-02") == 0.0
            assert await store.spent(f"{tenant}x", "2026-03-01") == 0.0
            (key,) = await redis.keys(f"ragstream:spend:*{tenant[2:]}:2026-03-01")
            assert 0 < await redis.ttl(key) <= 2 * 24 * 3600
        finally:
            await store.aclose()
