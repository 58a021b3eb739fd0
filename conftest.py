"""Repository-wide pytest hooks: tests marked ``stack`` get real Kafka, Weaviate, Redis and topics.

Any such test, in any package, may assume the infrastructure is up: the first one to run provisions
it (installing on a fresh machine) and later ones reuse it. Tests that need the services as well
ask for the ``platform`` fixture in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Tests import LiteLLM and the model directly too; nothing they import may reach for the internet
# (LiteLLM fetches a price map at import unless told not to, retrying for ~20 s offline).
for _name, _value in {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

_infrastructure_ready = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start Kafka, Weaviate and Redis and create the topics before the first ``stack`` test."""
    global _infrastructure_ready
    if _infrastructure_ready or item.get_closest_marker("stack") is None:
        return
    from ragstream_cli.stack import ensure_kafka, ensure_redis, ensure_weaviate, weaviate_api_key
    from ragstream_common.admin import ensure_topics

    # A first install takes minutes: let its progress reach the terminal and the CI log.
    with uncaptured(item.config):
        kafka = ensure_kafka()
        ensure_weaviate()
        ensure_redis()
        asyncio.run(ensure_topics(kafka.endpoint))
    # What the tests build from RetrieverSettings() reaches the local node with its key.
    os.environ["RAGSTREAM_WEAVIATE_API_KEY"] = weaviate_api_key()
    _infrastructure_ready = True


@contextlib.contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Suspend pytest's output capture, so that progress of long set-up work is seen live."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        yield


@pytest.fixture(scope="session")
def show_progress(
    pytestconfig: pytest.Config,
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context manager factory that lets long set-up work print its progress live."""
    return lambda: uncaptured(pytestconfig)


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every function sent to a worker thread through ``anyio.to_thread.run_sync``.

    FastDepends and FastAPI both hop to a thread that way for synchronous code; a test that asks
    for this list can assert that a path stays on the event loop.
    """
    import anyio.to_thread

    hops: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    return hops
