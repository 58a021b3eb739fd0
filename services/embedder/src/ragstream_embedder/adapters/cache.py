"""The shared embedding cache in Redis: one MGET per batch, one pipeline of SETs for new vectors.

Values are the vectors as little-endian float32 bytes (``domain.encode_vector``): 1.5 KiB for a
384-dimension vector, against about 8 KiB as JSON. Keys come from ``domain.cache_key``. Every
entry expires ``ttl_s`` after it was last stored; Redis's own LRU eviction bounds the memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ragstream_common.logging import get_logger
from ragstream_embedder.cache import Vector
from ragstream_embedder.domain import decode_vector, encode_vector

__all__ = ["RedisEmbeddingCache", "redacted_url"]

_log = get_logger(__name__)


def redacted_url(url: str) -> str:
    """Return ``url`` without its password, fit for a log line.

    Args:
        url: A ``redis://`` or ``rediss://`` URL, possibly with credentials.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisEmbeddingCache:
    """An ``EmbeddingCache`` on a Redis server (standalone; MGET spans keys of any slot).

    Args:
        client: An asyncio Redis client returning bytes (``decode_responses=False``).
        ttl_s: Seconds an entry lives after it was stored.
    """

    def __init__(self, client: Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, *, ttl_s: int, timeout_s: float) -> RedisEmbeddingCache:
        """Build a cache on the Redis at ``url``; no connection is made until the first call.

        Args:
            url: ``redis://[user:password@]host:port/db``.
            ttl_s: Seconds an entry lives after it was stored.
            timeout_s: Connect and read timeout of one call. One retry, without back-off,
                replaces a pooled connection the server closed; beyond that, the caller goes on
                without the cache rather than wait.
        """
        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
            client_name="ragstream-embedder",
        )
        return cls(client, ttl_s)

    async def get_many(self, keys: Sequence[str]) -> list[Vector | None]:
        """Return the vector stored under each key, None where there is none, in order.

        A value that is not a float32 vector (written by something else) counts as a miss.

        Args:
            keys: Cache keys.
        """
        if not keys:
            return []
        values = await self._client.mget(list(keys))
        vectors: list[Vector | None] = []
        for key, value in zip(keys, values, strict=True):
            vector = None
            if value is not None:
                try:
                    # Bytes, as the client does not decode responses.
                    vector = decode_vector(value if isinstance(value, bytes) else value.encode())
                except ValueError:
                    _log.warning("embedding_cache_bad_value", key=key, size=len(value))
            vectors.append(vector)
        return vectors

    async def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store each ``(key, vector)`` with the TTL, in one round trip.

        Args:
            items: Keys and their vectors.
        """
        if not items:
            return
        # Not a transaction: each SET stands alone, and a partial write is still useful.
        async with self._client.pipeline(transaction=False) as pipe:
            for key, vector in items:
                pipe.set(key, encode_vector(vector), ex=self._ttl_s)
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
