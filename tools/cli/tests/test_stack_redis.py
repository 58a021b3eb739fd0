"""Redis's pure parts: its command line, port, URL, PING probe, and the apt-get install steps."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from ragstream_cli.stack import redis as stack_redis
from ragstream_cli.stack.config import REDIS_MAXMEMORY, redis_port
from ragstream_cli.stack.errors import InstallError, MissingToolError, StackError
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.redis import (
    install_redis,
    redis_argv,
    redis_ready,
    redis_status,
    redis_url,
)


def _options(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a redis-server command line."""
    pairs = argv[1:]
    assert len(pairs) % 2 == 0
    return {pairs[i].removeprefix("--"): pairs[i + 1] for i in range(0, len(pairs), 2)}


@pytest.fixture
def quiet() -> Reporter:
    """A reporter writing plain lines nowhere visible."""
    return Reporter(Console(file=StringIO()), interactive=False)


class TestRedisArgv:
    def test_loopback_foreground_cache_without_persistence(self, tmp_path: Path) -> None:
        """The server binds loopback only, stays in the foreground, saves nothing, evicts LRU."""
        argv = redis_argv(tmp_path, 16379)
        assert argv[0] == "redis-server"
        options = _options(argv)
        assert options == {
            "bind": "127.0.0.1",
            "port": "16379",
            "dir": tmp_path.as_posix(),
            "save": "",
            "appendonly": "no",
            "daemonize": "no",
            "logfile": "",
            "protected-mode": "yes",
            "maxmemory": REDIS_MAXMEMORY,
            "maxmemory-policy": "allkeys-lru",
        }


class TestRedisPort:
    def test_default_port_and_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an override Redis listens on 6379, database 0, on loopback."""
        monkeypatch.delenv("RAGSTREAM_REDIS_PORT", raising=False)
        assert redis_port() == 6379
        assert redis_url() == "redis://127.0.0.1:6379/0"

    def test_port_overridable_by_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """RAGSTREAM_REDIS_PORT moves Redis, and the URL the services get follows."""
        monkeypatch.setenv("RAGSTREAM_REDIS_PORT", "16380")
        assert redis_url() == "redis://127.0.0.1:16380/0"

    def test_invalid_port_is_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A port variable that is not a port fails with a message naming it."""
        monkeypatch.setenv("RAGSTREAM_REDIS_PORT", "redis")
        with pytest.raises(StackError, match="RAGSTREAM_REDIS_PORT"):
            redis_port()


@pytest.fixture
def one_line_server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server answering every connection with the reply in the returned list."""
    reply = [b"+PONG\r\n"]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(64)
                conn.sendall(reply[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], reply
    stop.set()
    thread.join()
    server.close()


class TestRedisReady:
    def test_pong_is_ready(self, one_line_server: tuple[int, list[bytes]]) -> None:
        """A server that answers PING with PONG is a ready Redis."""
        port, _ = one_line_server
        assert redis_ready(port)

    def test_other_replies_are_not_ready(self, one_line_server: tuple[int, list[bytes]]) -> None:
        """A server that wants a password (or is not Redis) is not one we can use."""
        port, reply = one_line_server
        reply[0] = b"-NOAUTH Authentication required.\r\n"
        assert not redis_ready(port)

    def test_nothing_listening_is_not_ready(self) -> None:
        """A closed port is simply not ready, without raising."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        assert not redis_ready(port, timeout=0.5)


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_bin(isolated_stack: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of its own: no redis-server, and whatever fake tools a test puts there."""
    bin_dir = isolated_stack / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return bin_dir


class TestInstallRedis:
    def test_already_on_path_needs_no_apt(self, fake_bin: Path, quiet: Reporter) -> None:
        """A redis-server on PATH is used as it is: nothing is installed."""
        _script(fake_bin / "redis-server", "echo 'Redis server v=7.2.4 sha=0'\n")
        assert install_redis(quiet) == fake_bin / "redis-server"
        assert stack_redis.redis_version() == "7.2.4"
        assert redis_status().installed

    def test_installs_with_apt_get_non_interactively(self, fake_bin: Path, quiet: Reporter) -> None:
        """apt-get update, then apt-get install of redis-server without recommends, no prompts."""
        calls = fake_bin / "calls.txt"
        _script(
            fake_bin / "apt-get",
            f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n'
            'case "$*" in *install*)\n'
            f"  printf '#!/bin/sh\\necho v=7.0.15\\n' > {fake_bin}/redis-server\n"
            f"  /bin/chmod +x {fake_bin}/redis-server ;;\n"
            "esac\n",
        )
        assert not redis_status().installed

        assert install_redis(quiet) == fake_bin / "redis-server"

        update, install = calls.read_text().splitlines()
        assert update == "noninteractive update"
        assert install.startswith("noninteractive install -y --no-install-recommends")
        assert install.endswith(" redis-server")
        assert redis_status().installed
        assert redis_status().version == "7.0.15"

    def test_apt_get_failure_is_reported_with_its_log(
        self, fake_bin: Path, quiet: Reporter
    ) -> None:
        """A failing apt-get raises an InstallError quoting the install log's tail."""
        _script(fake_bin / "apt-get", "echo 'E: Unable to locate package redis-server'\nexit 100\n")
        with pytest.raises(InstallError, match="Unable to locate package") as raised:
            install_redis(quiet)
        assert raised.value.log_path is not None
        assert raised.value.log_path.name == "install.log"

    def test_missing_apt_get_is_a_clear_error(self, fake_bin: Path, quiet: Reporter) -> None:
        """Without apt-get the error says how to install Redis by hand."""
        with pytest.raises(MissingToolError, match=r"apt-get.*redis-server"):
            install_redis(quiet)

    def test_not_root_is_a_clear_error(
        self, fake_bin: Path, quiet: Reporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """apt-get needs root: a normal user is told to install Redis themselves."""
        _script(fake_bin / "apt-get", "exit 0\n")
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(MissingToolError, match="needs root"):
            install_redis(quiet)
