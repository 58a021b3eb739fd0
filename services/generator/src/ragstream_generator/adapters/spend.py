"""Tenants' daily spend in Redis, shared by every generator replica.

One float per tenant and UTC day, ``ragstream:spend:{tenant}:{day}`` (the tenant percent-quoted),
added to with INCRBYFLOAT (atomic across replicas) and expiring two days after its last addition,
so yesterday's total outlives midnight only long enough to be read by someone curious.
"""

from __future__ import annotations

from urllib.parse import quote

from redis.asyncio import Redis

from ragstream_generator.adapters.redis_client import redis_client

__all__ = ["RedisSpendStore"]

_PREFIX = "ragstream:spend"
_TTL_S = 2 * 24 * 3600


class RedisSpendStore:
    """A ``SpendStore`` on a Redis server.

    Args:
        client: An asyncio Redis client.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float) -> RedisSpendStore:
        """Build a store on the Redis at ``url``; no connection is made until the first call.

        Args:
            url: ``redis://[user:password@]host:port/db``.
            timeout_s: Connect and read timeout of one call (retried once, without back-off).
        """
        return cls(redis_client(url, timeout_s=timeout_s))

    @staticmethod
    def _key(tenant: str, day: str) -> str:
        return f"{_PREFIX}:{quote(tenant, safe='')}:{day}"

    async def spent(self, tenant: str, day: str) -> float:
        """Return what ``tenant`` spent on ``day``, 0.0 when nothing."""
        value = await self._client.get(self._key(tenant, day))
        return float(value) if value is not None else 0.0

    async def add(self, tenant: str, day: str, usd: float) -> None:
        """Add ``usd`` to what ``tenant`` spent on ``day`` and push its expiry back."""
        key = self._key(tenant, day)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, _TTL_S)
            await pipe.execute()

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()
