"""The embedding cache port, and the guard that keeps a cache problem from failing a batch.

The cache saves model time and nothing else: a vector missing from it is embedded again, at a
cost, but a batch that failed because of it would stall ingestion. So every cache call goes
through :class:`CacheGuard`, which turns an error into a warning, a counted error and "no cache"
(all misses, nothing stored), and after an error leaves the cache alone for a cool-down instead
of making every batch wait on a Redis that is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import Counter

from ragstream_common.logging import get_logger

__all__ = ["CacheGuard", "EmbeddingCache", "Vector"]

Vector = list[float]

_log = get_logger(__name__)


class EmbeddingCache(Protocol):
    """Vectors shared by every embedder replica, keyed by ``domain.cache_key``."""

    async def get_many(self, keys: Sequence[str]) -> list[Vector | None]:
        """Return the vector of each key, None where there is none, in the order of ``keys``."""
        ...

    async def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store each ``(key, vector)``."""
        ...


class CacheGuard:
    """Calls an :class:`EmbeddingCache`, never letting its failures through.

    Args:
        errors: Counter of failed cache calls (labelled by service and operation).
        service: The service label.
        cooldown_s: After a failure, how long calls skip the cache.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        errors: Counter,
        service: str,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._errors = errors
        self._service = service
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._skip_until = float("-inf")

    def _available(self) -> bool:
        return self._clock() >= self._skip_until

    def _failed(self, operation: str, error: Exception) -> None:
        self._errors.labels(self._service, operation).inc()
        self._skip_until = self._clock() + self._cooldown_s
        _log.warning(
            "embedding_cache_unavailable",
            operation=operation,
            error_type=type(error).__name__,
            error=str(error),
            skip_s=self._cooldown_s,
        )

    async def lookup(
        self, cache: EmbeddingCache | None, keys: Sequence[str]
    ) -> list[Vector | None] | None:
        """Return the cached vector of each key (None where it missed), or None for no answer.

        No answer: no cache configured, the cache failed, or it is cooling down after a failure.

        Args:
            cache: The cache, or None when none is configured.
            keys: The keys to look up.
        """
        if cache is None or not keys or not self._available():
            return None
        try:
            found = await cache.get_many(keys)
            if len(found) != len(keys):
                raise ValueError(f"asked for {len(keys)} keys, the cache answered {len(found)}")
        except Exception as error:  # availability over cost: embed instead
            self._failed("get", error)
            return None
        return found

    async def store(
        self, cache: EmbeddingCache | None, items: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        """Store fresh vectors; without a (working) cache, nothing happens.

        Args:
            cache: The cache, or None when none is configured.
            items: ``(key, vector)`` pairs.
        """
        if cache is None or not items or not self._available():
            return
        try:
            await cache.put_many(items)
        except Exception as error:  # the vectors are published all the same
            self._failed("put", error)
