"""Install helpers: atomic install dirs, logged build steps, tool checks, progress output."""

from __future__ import annotations

import io
import stat
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from ragstream_cli.stack.errors import InstallError, MissingToolError
from ragstream_cli.stack.install import (
    INSTALL_MARKER,
    atomic_install,
    is_installed,
    java_major_version,
    require_tool,
    run_logged,
)
from ragstream_cli.stack.progress import Reporter


def _plain_reporter(heartbeat: float = 30.0) -> tuple[Reporter, io.StringIO]:
    buffer = io.StringIO()
    return Reporter(Console(file=buffer), interactive=False, heartbeat=heartbeat), buffer


def test_atomic_install_builds_then_marks(tmp_path: Path) -> None:
    """A successful build is renamed into place with the marker; a second call does nothing."""
    target = tmp_path / "thing-1.0"
    calls: list[Path] = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        assert tmp != target
        (tmp / "payload").write_text("ok")

    assert atomic_install(target, build, "test") is True
    assert is_installed(target)
    assert (target / "payload").read_text() == "ok"
    assert atomic_install(target, build, "test") is False
    assert len(calls) == 1


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    """A build that raises leaves neither the target nor its temp dir, so the next run redoes it."""
    target = tmp_path / "thing-1.0"

    def build(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise InstallError("boom")

    with pytest.raises(InstallError):
        atomic_install(target, build, "test")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_unmarked_or_leftover_dirs_are_rebuilt(tmp_path: Path) -> None:
    """A target without marker and a crashed run's temp dir are discarded, never used."""
    target = tmp_path / "thing-1.0"
    target.mkdir()
    (target / "stale").write_text("half-installed")
    leftover = tmp_path / ".thing-1.0.tmp-99999"
    leftover.mkdir()
    assert not is_installed(target)

    def build(tmp: Path) -> None:
        (tmp / "fresh").write_text("y")

    atomic_install(target, build, "test")
    assert sorted(p.name for p in target.iterdir()) == sorted([INSTALL_MARKER, "fresh"])
    assert not leftover.exists()


def test_run_logged_success_appends_to_log(tmp_path: Path) -> None:
    """A successful step writes a header and the tool's output to the log and reports ok."""
    reporter, out = _plain_reporter()
    log = tmp_path / "install.log"
    run_logged(
        [sys.executable, "-c", "print('tool output')"],
        log_path=log,
        title="Doing a thing",
        reporter=reporter,
    )
    assert "tool output" in log.read_text()
    assert "ok  Doing a thing" in out.getvalue()


def test_run_logged_failure_has_log_path_and_last_30_lines(tmp_path: Path) -> None:
    """A failing step raises InstallError quoting the log path and only its last 30 lines."""
    reporter, out = _plain_reporter()
    log = tmp_path / "install.log"
    log.write_text("line from an older run\n")
    code = "import sys; [print('out', i) for i in range(50)]; sys.exit(2)"
    with pytest.raises(InstallError) as info:
        run_logged([sys.executable, "-c", code], log_path=log, title="Building", reporter=reporter)
    message = str(info.value)
    assert "exit status 2" in message
    assert str(log) in message
    assert "out 49" in message
    assert "out 19" not in message
    assert "older run" not in message
    assert "FAILED  Building" in out.getvalue()
    assert str(log) in out.getvalue()


def test_require_tool_missing_is_clear() -> None:
    """A missing tool raises MissingToolError saying what it is for and how to get it."""
    with pytest.raises(MissingToolError, match=r"needed to frobnicate\. Install it"):
        require_tool("surely-not-a-real-tool-xyz", "frobnicate", "Install it.")


@pytest.mark.parametrize(
    ("banner", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_292"', 8)],
)
def test_java_major_version_parsing(tmp_path: Path, banner: str, major: int) -> None:
    """Both modern ("17.0.x") and legacy ("1.8.0_x") Java version banners are understood."""
    fake = tmp_path / "java"
    fake.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert java_major_version(str(fake)) == major


def test_plain_progress_has_timestamps_and_heartbeat() -> None:
    """Without a terminal, steps print timestamped start/heartbeat/end lines."""
    reporter, out = _plain_reporter(heartbeat=0.1)
    with reporter.step("Building something slow"):
        time.sleep(0.35)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[")
    assert "==> Building something slow" in lines[0]
    assert any("... still building something slow" in line for line in lines)
    assert "ok  Building something slow" in lines[-1]


def test_interactive_progress_reports_success() -> None:
    """With a terminal, the spinner ends in a check line with the elapsed time."""
    buffer = io.StringIO()
    reporter = Reporter(Console(file=buffer, force_terminal=True, width=120), interactive=True)
    with reporter.step("Quick step"):
        pass
    assert "✓" in buffer.getvalue()
    assert "Quick step" in buffer.getvalue()
