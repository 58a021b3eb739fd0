"""The answer caches in Redis, shared by every generator replica.

Per tenant (the tenant, percent-quoted, is part of every key): ``…:exact:{hash}`` strings and one
``…:semantic`` list of the newest ``max_entries`` answers with their query vectors, as JSON. Every
entry expires ``ttl_s`` after it was stored.
"""

from __future__ import annotations

from urllib.parse import quote

from redis.asyncio import Redis

from ragstream_generator.adapters.redis_client import redis_client
from ragstream_generator.cache import CachedAnswer

__all__ = ["RedisAnswerCache"]

_PREFIX = "ragstream:answers"


class RedisAnswerCache:
    """An ``AnswerCache`` on a Redis server.

    Args:
        client: An asyncio Redis client returning bytes.
        ttl_s: Seconds an entry lives after it was stored.
        max_entries: How many recent answers per tenant the semantic lookup scans.
    """

    def __init__(self, client: Redis, *, ttl_s: int, max_entries: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._max_entries = max_entries

    @classmethod
    def from_url(
        cls, url: str, *, ttl_s: int, max_entries: int, timeout_s: float
    ) -> RedisAnswerCache:
        """Build a cache on the Redis at ``url``; no connection is made until the first call.

        Args:
            url: ``redis://[user:password@]host:port/db``.
            ttl_s: Seconds an entry lives after it was stored.
            max_entries: Recent answers kept per tenant for the semantic lookup.
            timeout_s: Connect and read timeout of one call (retried once, without back-off).
        """
        return cls(redis_client(url, timeout_s=timeout_s), ttl_s=ttl_s, max_entries=max_entries)

    @staticmethod
    def _scope(tenant: str) -> str:
        return f"{_PREFIX}:{quote(tenant, safe='')}"

    async def get_exact(self, tenant: str, key: str) -> CachedAnswer | None:
        """Return the answer stored under ``key`` for ``tenant``, or None."""
        value = await self._client.get(f"{self._scope(tenant)}:exact:{key}")
        return None if value is None else CachedAnswer.model_validate_json(value)

    async def recent(self, tenant: str) -> list[CachedAnswer]:
        """Return ``tenant``'s most recent answers with a query vector, newest first."""
        values = await self._client.lrange(
            f"{self._scope(tenant)}:semantic", 0, self._max_entries - 1
        )
        return [CachedAnswer.model_validate_json(value) for value in values]

    async def put(self, tenant: str, key: str, entry: CachedAnswer) -> None:
        """Store ``entry`` under ``key`` and, with a query vector, among the recent answers."""
        scope = self._scope(tenant)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(
                f"{scope}:exact:{key}",
                entry.model_copy(update={"query_vector": None}).model_dump_json(),
                ex=self._ttl_s,
            )
            if entry.query_vector is not None:
                semantic = f"{scope}:semantic"
                pipe.lpush(semantic, entry.model_dump_json())
                pipe.ltrim(semantic, 0, self._max_entries - 1)
                pipe.expire(semantic, self._ttl_s)
            await pipe.execute()

    async def ping(self) -> bool:
        """Whether the server answers; never raises."""
        try:
            return bool(await self._client.ping())
        except Exception:  # any failure means "not reachable now"
            return False

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()
