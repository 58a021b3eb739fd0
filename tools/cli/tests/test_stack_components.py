"""The generic component lifecycle (install → reuse → start → ready → stop) on a fake server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragstream_cli.stack.components import (
    Component,
    component_status,
    ensure_component,
    stop_component,
)
from ragstream_cli.stack.errors import PortInUseError, ProcessDiedError
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


class FakeServer:
    """A component whose server is ``python -m http.server``; counts install/prepare calls."""

    def __init__(self, tmp_path: Path, argv: list[str] | None = None) -> None:
        self.port = _free_port()
        self.installs = 0
        self.prepares = 0
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.process = ManagedProcess(
            name="fake",
            argv=argv if argv is not None else _http_argv(self.port),
            log_path=self.state / "fake.log",
            pid_path=self.state / "fake.pid",
        )
        self.component = Component(
            name="fake",
            title="Fake 1.0",
            version="1.0",
            install_dir=tmp_path / "home" / "fake-1.0",
            state_dir=self.state,
            port=self.port,
            endpoint=f"http://127.0.0.1:{self.port}",
            ports={"http": self.port},
            probe=self.probe,
            install=self.install,
            prepare=self.prepare,
            process=self.process,
            start_timeout=10.0,
        )

    def probe(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def install(self, reporter: Reporter) -> None:
        self.installs += 1

    def prepare(self, reporter: Reporter) -> None:
        self.prepares += 1


@pytest.fixture
def quiet() -> Reporter:
    """A reporter writing plain lines nowhere visible."""
    from io import StringIO

    from rich.console import Console

    return Reporter(Console(file=StringIO()), interactive=False)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeServer]:
    """A fake component, stopped at teardown."""
    server = FakeServer(tmp_path)
    yield server
    server.process.stop(timeout=5)


def test_ensure_installs_starts_then_reuses(fake: FakeServer, quiet: Reporter) -> None:
    """First ensure installs and starts it; the second just reuses it, quickly."""
    first = ensure_component(fake.component, quiet)
    assert first.action == "started"
    assert first.status.running
    assert first.status.managed
    assert first.status.pid == fake.process.pid()
    assert (fake.installs, fake.prepares) == (1, 1)

    second = ensure_component(fake.component, quiet)
    assert second.action == "reused"
    assert second.seconds < 1.0
    assert (fake.installs, fake.prepares) == (1, 1)


def test_stop_then_status(fake: FakeServer, quiet: Reporter) -> None:
    """stop_component stops a server we started, and status then reports it down."""
    ensure_component(fake.component, quiet)
    assert stop_component(fake.component, timeout=5) is True
    status = component_status(fake.component)
    assert not status.running
    assert not status.managed
    assert status.pid is None
    assert stop_component(fake.component) is False


def test_foreign_server_is_reused_not_installed_nor_stopped(
    fake: FakeServer, quiet: Reporter
) -> None:
    """A ready server we did not start is reused as is, reported unmanaged, and never stopped."""
    foreign = subprocess.Popen(
        _http_argv(fake.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not fake.probe() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = ensure_component(fake.component, quiet)
        assert result.action == "reused"
        assert fake.installs == 0
        assert not result.status.managed
        assert result.status.pid == foreign.pid
        assert stop_component(fake.component) is False
        assert foreign.poll() is None
    finally:
        foreign.terminate()
        foreign.wait()


def test_port_taken_by_something_else_is_a_clear_error(fake: FakeServer, quiet: Reporter) -> None:
    """If the port is held by a program that fails the probe, ensure refuses to start."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fake.port))
        squatter.listen()
        with pytest.raises(PortInUseError, match=f"port {fake.port} is already in use"):
            ensure_component(fake.component, quiet)
    assert not fake.process.is_running()


def test_server_dying_at_start_reports_its_log(tmp_path: Path, quiet: Reporter) -> None:
    """A server that exits during startup fails ensure with ProcessDiedError and its output."""
    code = "import sys; print('bad config: no such option'); sys.exit(1)"
    broken = FakeServer(tmp_path, argv=[sys.executable, "-c", code])
    with pytest.raises(ProcessDiedError, match="bad config: no such option"):
        ensure_component(broken.component, quiet)
