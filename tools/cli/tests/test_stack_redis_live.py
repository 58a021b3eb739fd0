"""The real Redis: installed from Debian's packages when missing, started (or reused), stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ragstream_cli.stack import ensure_redis, redis_ready, redis_status, redis_url, stop_redis


@pytest.mark.stack
class TestRedisLive:
    def test_redis_is_ensured_then_reused(self) -> None:
        """ensure_redis brings Redis up; a second call reuses it within a second."""
        first = ensure_redis()
        assert first.status.running
        assert first.status.installed

        again = ensure_redis()
        assert again.action == "reused"
        assert again.seconds < 1.0
        assert redis_ready()
        assert redis_status().endpoint == redis_url()
        # Deliberately no stop: the stack is shared with the rest of the test session.

    def test_private_redis_starts_and_stops(
        self, isolated_stack: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a port of its own, a checkout starts its Redis, owns it, and stops it again."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.setenv("RAGSTREAM_REDIS_PORT", str(port))
        try:
            started = ensure_redis()
            assert started.action == "started"
            assert started.status.managed
            assert started.status.version[0].isdigit()
            assert started.endpoint == f"redis://127.0.0.1:{port}/0"
        finally:
            stopped = stop_redis()
        assert stopped
        assert not redis_ready(port)
        assert not redis_status().running
