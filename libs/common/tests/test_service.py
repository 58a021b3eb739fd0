"""``freeze_after_startup``: what a service made while starting is set aside by the collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from ragstream_common.service import freeze_after_startup


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it was: nothing frozen before or after."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Service:
    """A minimal ASGI app: builds a long-lived object at startup, records the calls it gets."""

    def __init__(self) -> None:
        self.built: list[Any] = []
        self.http_calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.http_calls += 1
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # What a service loads once and keeps: a model, clients, their imports.
                self.built.append({"client": [object() for _ in range(100)]})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _run_lifespan(app: Any) -> list[tuple[str, int]]:
    """Drive ``app``'s lifespan; return each message it sent with the freeze count at that time."""
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[tuple[str, int]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], gc.get_freeze_count()))

    await app({"type": "lifespan"}, receive, send)
    return sent


@pytest.mark.usefixtures("unfrozen")
class TestFreezeAfterStartup:
    async def test_startup_objects_are_frozen_before_the_server_is_told(self) -> None:
        service = _Service()
        sent = await _run_lifespan(freeze_after_startup(service))

        assert [kind for kind, _ in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        frozen_at_startup = sent[0][1]
        assert frozen_at_startup > 0
        # The objects built at startup are among the frozen: the collector no longer walks them.
        tracked = {id(obj) for obj in gc.get_objects()}
        assert id(service.built[0]) not in tracked

    async def test_without_the_wrapper_nothing_is_frozen(self) -> None:
        sent = await _run_lifespan(_Service())
        assert sent[0][1] == 0

    async def test_other_scopes_pass_through(self) -> None:
        service = _Service()
        await freeze_after_startup(service)({"type": "http"}, None, None)
        assert service.http_calls == 1
        assert gc.get_freeze_count() == 0
