"""``freeze_after_startup``: what a service made while starting is set aside by the collector;
``serve``: idle connections outlive the idle timeout of the clients in front."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
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


# A service of its own: serve() with the settings the environment gives, answering "ok".
_SERVER = """
from ragstream_common.service import serve
from ragstream_common.settings import ServiceSettings

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})

serve(app, ServiceSettings(service_name="keep-alive-probe"))
"""

_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_server(port: int, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "RAGSTREAM_HTTP_PORT": str(port), **env}
    return subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _connect(port: int, server: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ask(connection: socket.socket) -> bytes:
    """Send one request on ``connection``; return the response, or b"" if the server closed it."""
    try:
        connection.sendall(_REQUEST)
        response = b""
        while not response.endswith(b"ok"):
            data = connection.recv(4096)
            if not data:
                return response
            response += data
        return response
    except ConnectionError:
        return b""


class TestIdleConnections:
    def test_an_idle_connection_stays_open_past_uvicorns_own_timeout(self) -> None:
        """Idle 6 s, the connection still answers (uvicorn's default closes it at 5 s);
        RAGSTREAM_HTTP_KEEP_ALIVE_S of 2 closes it: the setting is what the server uses."""
        ports = _free_port(), _free_port()
        servers = _start_server(ports[0]), _start_server(ports[1], RAGSTREAM_HTTP_KEEP_ALIVE_S="2")
        connections: list[socket.socket] = []
        try:
            connections += [
                _connect(port, server) for port, server in zip(ports, servers, strict=True)
            ]
            assert all(_ask(connection).startswith(b"HTTP/1.1 200") for connection in connections)
            time.sleep(6)
            default, short = (_ask(connection) for connection in connections)
            assert default.startswith(b"HTTP/1.1 200")
            assert short == b""
        finally:
            for connection in connections:
                connection.close()
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
