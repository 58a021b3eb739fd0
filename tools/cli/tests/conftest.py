"""Fixtures for the stack provisioner tests: isolated state/cache dirs and tiny Python children."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ragstream_cli.stack.processes import ManagedProcess


@pytest.fixture
def isolated_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point RAGSTREAM_STACK_DIR and RAGSTREAM_HOME at a temp dir, away from the real stack."""
    monkeypatch.setenv("RAGSTREAM_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("RAGSTREAM_HOME", str(tmp_path / "home"))
    return tmp_path


def python_argv(code: str) -> list[str]:
    """argv running ``code`` in this interpreter, unbuffered so the log shows prints at once."""
    return [sys.executable, "-u", "-c", code]


@pytest.fixture
def make_process(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Factory of ManagedProcess objects running Python snippets; all are stopped at teardown."""
    made: list[ManagedProcess] = []

    def factory(
        code: str,
        name: str = "sleeper",
        ready: Callable[[], bool] | None = None,
        argv: Sequence[str] | None = None,
    ) -> ManagedProcess:
        proc = ManagedProcess(
            name=name,
            argv=list(argv) if argv is not None else python_argv(code),
            log_path=tmp_path / f"{name}.log",
            pid_path=tmp_path / f"{name}.pid",
            ready=ready,
        )
        made.append(proc)
        return proc

    yield factory
    for proc in made:
        proc.stop(timeout=2.0)
