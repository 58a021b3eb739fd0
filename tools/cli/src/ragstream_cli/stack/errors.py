"""Errors raised by the stack provisioner; their messages are meant to be shown to a human as is."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "InstallError",
    "MissingToolError",
    "PortInUseError",
    "ProcessDiedError",
    "ReadyTimeoutError",
    "StackError",
]


class StackError(RuntimeError):
    """Base class: something about the local stack cannot be provisioned or run.

    Attributes:
        log_path: The log file worth reading, when there is one.
        log_tail: Its last lines at the time of the failure (already part of the message).
    """

    def __init__(self, message: str, *, log_path: Path | None = None, log_tail: str = "") -> None:
        self.log_path = log_path
        self.log_tail = log_tail
        full = message
        if log_path is not None:
            full += f"\n  log: {log_path}"
        if log_tail:
            indented = "\n".join(f"  | {line}" for line in log_tail.splitlines())
            full += f"\n  last lines:\n{indented}"
        super().__init__(full)


class MissingToolError(StackError):
    """A required external tool (java, mvn, go) is not installed or too old."""


class InstallError(StackError):
    """Installing a component failed (the build or download tool exited non-zero)."""


class ProcessDiedError(StackError):
    """A managed process exited while we were waiting for it to become ready."""


class ReadyTimeoutError(StackError):
    """A managed process stayed alive but never passed its readiness check in time."""


class PortInUseError(StackError):
    """A port we need is taken by something that is not the server we expect."""
