"""Prometheus's pure parts: its command line, port, opt-in switch, status row and apt install."""

from __future__ import annotations

import os
import socket
import stat
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from ragstream_cli.__main__ import build_parser
from ragstream_cli.stack.errors import InstallError, MissingToolError, StackError
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.prometheus import (
    ensure_promtool,
    find_prometheus_tools,
    install_prometheus,
    prometheus_argv,
    prometheus_config_path,
    prometheus_port,
    prometheus_ready,
    prometheus_requested,
    prometheus_status,
    prometheus_status_row,
    prometheus_url,
    prometheus_version,
)


@pytest.fixture
def quiet() -> Reporter:
    """A reporter writing plain lines nowhere visible."""
    return Reporter(Console(file=StringIO()), interactive=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class TestPrometheusArgv:
    def test_loopback_with_our_config_and_state_dir(self, tmp_path: Path) -> None:
        """The server listens on loopback only, reads the given config, keeps its TSDB in state."""
        config = tmp_path / "prometheus.yml"
        argv = prometheus_argv(config, tmp_path / "state", 19090)
        assert argv[0] == "prometheus"
        assert f"--config.file={config}" in argv
        assert f"--storage.tsdb.path={tmp_path / 'state' / 'data'}" in argv
        assert "--web.listen-address=127.0.0.1:19090" in argv

    def test_config_is_the_checkouts_local_one(self) -> None:
        """The stack runs deploy/observability/prometheus.yml of this checkout, which exists."""
        path = prometheus_config_path()
        assert path.parts[-3:] == ("deploy", "observability", "prometheus.yml")
        assert path.is_file()


class TestPrometheusPort:
    def test_default_port_and_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an override Prometheus listens on 9090 on loopback."""
        monkeypatch.delenv("RAGSTREAM_PROMETHEUS_PORT", raising=False)
        assert prometheus_port() == 9090
        assert prometheus_url() == "http://127.0.0.1:9090"

    def test_port_overridable_by_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """RAGSTREAM_PROMETHEUS_PORT moves it, and its URL follows."""
        monkeypatch.setenv("RAGSTREAM_PROMETHEUS_PORT", "19091")
        assert prometheus_url() == "http://127.0.0.1:19091"

    def test_invalid_port_is_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A port variable that is not a port fails with a message naming it."""
        monkeypatch.setenv("RAGSTREAM_PROMETHEUS_PORT", "prom")
        with pytest.raises(StackError, match="RAGSTREAM_PROMETHEUS_PORT"):
            prometheus_port()

    def test_nothing_listening_is_not_ready(self) -> None:
        """A closed port is simply not ready, without raising."""
        assert not prometheus_ready(_free_port(), timeout=0.5)


class TestOptIn:
    @pytest.mark.parametrize(("value", "wanted"), [("1", True), ("true", True), ("0", False)])
    def test_environment_switch(
        self, value: str, wanted: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RAGSTREAM_PROMETHEUS=1 (or true) asks `ragstream up` for Prometheus; 0 does not."""
        monkeypatch.setenv("RAGSTREAM_PROMETHEUS", value)
        assert prometheus_requested() is wanted

    def test_off_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the variable, Prometheus stays optional."""
        monkeypatch.delenv("RAGSTREAM_PROMETHEUS", raising=False)
        assert not prometheus_requested()

    def test_up_takes_the_flag(self) -> None:
        """`ragstream up --with-prometheus` parses; plain `up` leaves it off."""
        parser = build_parser()
        assert parser.parse_args(["up", "--with-prometheus"]).with_prometheus
        assert not parser.parse_args(["up"]).with_prometheus


class TestStatusRow:
    def test_no_row_when_not_running(
        self, isolated_stack: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An optional component that is not running adds no row to `ragstream status`."""
        monkeypatch.setenv("RAGSTREAM_PROMETHEUS_PORT", str(_free_port()))
        assert prometheus_status_row() is None


@pytest.fixture
def fake_bin(isolated_stack: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of its own: no Prometheus, and whatever fake tools a test puts there."""
    bin_dir = isolated_stack / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return bin_dir


def _fake_apt(bin_dir: Path, *, candidate: str) -> Path:
    """apt-cache answering with ``candidate``; apt-get logging calls and 'installing' both tools."""
    calls = bin_dir / "calls.txt"
    _script(bin_dir / "apt-cache", f"echo 'prometheus:'\necho '  Candidate: {candidate}'\n")
    _script(
        bin_dir / "apt-get",
        f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n'
        'case "$*" in *install*)\n'
        f"  printf '#!/bin/sh\\necho prometheus, version 2.42.0+ds\\n' > {bin_dir}/prometheus\n"
        f"  printf '#!/bin/sh\\n' > {bin_dir}/promtool\n"
        f"  /bin/chmod +x {bin_dir}/prometheus {bin_dir}/promtool ;;\n"
        "esac\n",
    )
    return calls


class TestInstallPrometheus:
    def test_already_on_path_needs_no_apt(self, fake_bin: Path, quiet: Reporter) -> None:
        """prometheus and promtool on PATH are used as they are: nothing is installed."""
        _script(fake_bin / "prometheus", "echo 'prometheus, version 2.53.1 (branch: HEAD)'\n")
        _script(fake_bin / "promtool", "exit 0\n")
        tools = install_prometheus(quiet)
        assert tools.prometheus == fake_bin / "prometheus"
        assert ensure_promtool(quiet) == fake_bin / "promtool"
        assert prometheus_version() == "2.53.1"
        assert prometheus_status().installed

    def test_one_tool_alone_is_not_installed(self, fake_bin: Path) -> None:
        """A promtool without the server (or the reverse) does not count as installed."""
        _script(fake_bin / "promtool", "exit 0\n")
        assert find_prometheus_tools() is None

    def test_known_package_installs_without_update(self, fake_bin: Path, quiet: Reporter) -> None:
        """With the package in apt's lists, only apt-get install runs, non-interactively."""
        calls = _fake_apt(fake_bin, candidate="2.42.0+ds-5+deb12u1")
        tools = install_prometheus(quiet)
        assert tools.promtool == fake_bin / "promtool"
        (install,) = calls.read_text().splitlines()
        assert install.startswith("noninteractive install -y --no-install-recommends")
        assert install.endswith(" prometheus")
        assert prometheus_status().version == "2.42.0"

    def test_unknown_package_updates_lists_first(self, fake_bin: Path, quiet: Reporter) -> None:
        """When apt-cache has no candidate, apt-get update runs once before the install."""
        calls = _fake_apt(fake_bin, candidate="(none)")
        install_prometheus(quiet)
        update, install = calls.read_text().splitlines()
        assert update == "noninteractive update"
        assert install.endswith(" prometheus")

    def test_apt_get_failure_is_reported_with_its_log(
        self, fake_bin: Path, quiet: Reporter
    ) -> None:
        """A failing apt-get raises an InstallError quoting the install log's tail."""
        _script(fake_bin / "apt-get", "echo 'E: Unable to locate package prometheus'\nexit 100\n")
        with pytest.raises(InstallError, match="Unable to locate package") as raised:
            install_prometheus(quiet)
        assert raised.value.log_path is not None
        assert raised.value.log_path.name == "install.log"

    def test_missing_apt_get_is_a_clear_error(self, fake_bin: Path, quiet: Reporter) -> None:
        """Without apt-get the error says how to install Prometheus by hand."""
        with pytest.raises(MissingToolError, match=r"apt-get.*prometheus"):
            install_prometheus(quiet)

    def test_not_root_is_a_clear_error(
        self, fake_bin: Path, quiet: Reporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """apt-get needs root: a normal user is told to install Prometheus themselves."""
        _script(fake_bin / "apt-get", "exit 0\n")
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(MissingToolError, match="needs root"):
            install_prometheus(quiet)
