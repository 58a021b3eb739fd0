"""Cross-service fixtures: the real platform (Kafka, Weaviate, the five services), on demand.

The first test that asks for ``platform`` provisions and starts whatever is not already running
(installing Kafka and Weaviate on a fresh machine) and reuses whatever is; what this session
started keeps running for the next session, and `make down` stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from ragstream_cli.stack.platform import Platform, ensure_platform, start_extra_gateway


@pytest.fixture(scope="session")
def platform(show_progress: Callable[[], AbstractContextManager[None]]) -> Platform:
    """The running platform: infrastructure, topics and the five services."""
    with show_progress():
        return ensure_platform()


@pytest.fixture(scope="session")
def second_gateway(platform: Platform) -> Iterator[str]:
    """A second gateway replica beside the first, for request/reply across replicas."""
    url, stop = start_extra_gateway(platform, port=8001)
    yield url
    stop()
