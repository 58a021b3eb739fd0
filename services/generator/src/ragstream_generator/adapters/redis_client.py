"""The generator's one Redis client, shared by the answer caches and the spend store."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["redis_client"]


def redis_client(url: str, *, timeout_s: float) -> Redis:
    """Return a client for the Redis at ``url``; no connection is made until the first call.

    Calls time out quickly and are retried once without back-off: Redis only ever saves work
    here (cached answers, budget checks), so a slow Redis must cost an answer little.

    Args:
        url: ``redis://[user:password@]host:port/db``.
        timeout_s: Connect and read timeout of one call.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        decode_responses=False,
        client_name="ragstream-generator",
    )
