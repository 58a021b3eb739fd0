"""Run the fake server on loopback in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from ragstream_fakellm.app import create_app

__all__ = ["RunningServer", "run_in_thread"]

STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningServer:
    """A fake server listening on 127.0.0.1.

    Args:
        port: The port it listens on.
    """

    port: int

    @property
    def base_url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``) to give a client."""
        return f"{self.base_url}/v1"


@contextmanager
def run_in_thread() -> Iterator[RunningServer]:
    """Serve a fresh fake server on a free loopback port until the block exits.

    The socket is bound before the thread starts, so the port cannot be taken meanwhile; a
    stalled request delays the shutdown by at most a second.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fakellm", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fakellm did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
