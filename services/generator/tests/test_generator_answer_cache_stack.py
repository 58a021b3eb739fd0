"""The answer cache adapter on the stack's real Redis: scoping per tenant, trimming, expiry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ragstream_common.events import Citation
from ragstream_generator.adapters.answer_cache import RedisAnswerCache
from ragstream_generator.cache import CachedAnswer

pytestmark = pytest.mark.stack

# Where the stack's Redis listens (ragstream_cli.stack.redis_url(), started by conftest.py).
REDIS_URL = "redis://127.0.0.1:6379/0"


def _entry(answer: str, vector: list[float] | None = None) -> CachedAnswer:
    citation = Citation(n=1, doc_id="d", chunk_id="d#1", title="T", snippet="s", score=0.9)
    return CachedAnswer(
        answer=answer, citations=[citation], model="m", query_vector=vector, top_chunk_id="d#1"
    )


@pytest.fixture
async def cache() -> AsyncIterator[RedisAnswerCache]:
    """A cache on the stack's Redis keeping two recent answers per tenant for a minute."""
    cache = RedisAnswerCache.from_url(REDIS_URL, ttl_s=60, max_entries=2, timeout_s=1.0)
    yield cache
    await cache.aclose()


@pytest.fixture
def tenant() -> str:
    """A tenant name of this test only, with a separator in it."""
    return f"t:{uuid.uuid4().hex[:8]}"


class TestRedisAnswerCache:
    async def test_round_trip(self, cache: RedisAnswerCache, tenant: str) -> None:
        """A stored answer comes back whole from both the exact key and the recent list."""
        entry = _entry("A [1].", [0.1, 0.2])
        await cache.put(tenant, "k", entry)
        exact = await cache.get_exact(tenant, "k")
        assert exact is not None
        assert exact.answer == entry.answer
        assert exact.citations == entry.citations
        assert await cache.recent(tenant) == [entry]

    async def test_tenants_do_not_share(self, cache: RedisAnswerCache, tenant: str) -> None:
        """Another tenant, even one whose name extends this one's, sees none of its entries."""
        await cache.put(tenant, "k", _entry("A [1].", [0.1]))
        for other in (f"{tenant}x", f"{tenant}:semantic", tenant.upper()):
            assert await cache.get_exact(other, "k") is None
            assert await cache.recent(other) == []

    async def test_recent_is_trimmed_newest_first(
        self, cache: RedisAnswerCache, tenant: str
    ) -> None:
        """Only the newest ``max_entries`` answers are kept for the semantic lookup."""
        for n in range(3):
            await cache.put(tenant, f"k{n}", _entry(f"answer {n} [1].", [float(n)]))
        assert [e.answer for e in await cache.recent(tenant)] == ["answer 2 [1].", "answer 1 [1]."]

    async def test_entries_expire(self, cache: RedisAnswerCache, tenant: str) -> None:
        """Every key written carries the TTL."""
        await cache.put(tenant, "k", _entry("A [1].", [0.1]))
        client = Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match="ragstream:answers:t%3A*")]
            owned = [key for key in keys if tenant.split(":")[1].encode() in key]
            assert len(owned) == 2
            for key in owned:
                assert 0 < await client.ttl(key) <= 60
        finally:
            await client.aclose()
