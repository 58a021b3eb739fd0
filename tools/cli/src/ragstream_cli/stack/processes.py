"""Detached child processes with a pid file, a log file and a readiness check.

A :class:`ManagedProcess` describes one long-running server (Kafka, Weaviate, a ragstream
service). Its state lives on disk (pid file + log file), not in this interpreter, so a CLI
invocation can stop what an earlier invocation or a pytest session started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ragstream_cli.stack.errors import ProcessDiedError, ReadyTimeoutError, StackError

__all__ = ["ManagedProcess", "PidRecord", "process_age_s", "read_log_tail"]

# Processes started by this interpreter. Only the parent can reap a child, and an unreaped dead
# child (a zombie) still answers kill(pid, 0); polling the Popen is the reliable liveness test.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _leave_children_running() -> None:
    """Let go of the children still running at exit: servers, meant to outlive this interpreter."""
    # Dropping a Popen whose child runs warns (ResourceWarning), and importing weaviate-client turns
    # such warnings on for the whole process; here the child running on is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _CHILDREN.clear()


_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class PidRecord:
    """What the pid file remembers about a started process.

    ``start_ticks`` (Linux: start time since boot, from /proc) tells a live process apart from an
    unrelated one that got the same pid after a reboot or pid wrap-around; ``log_offset`` is where
    this run's output begins in the (appended-to) log file.
    """

    pid: int
    start_ticks: str | None = None
    log_offset: int = 0
    started_at: float = 0.0
    argv: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Serialise for the pid file."""
        return json.dumps(
            {
                "pid": self.pid,
                "start_ticks": self.start_ticks,
                "log_offset": self.log_offset,
                "started_at": self.started_at,
                "argv": list(self.argv),
            }
        )

    @classmethod
    def parse(cls, text: str) -> PidRecord | None:
        """Parse a pid file: our JSON, or a bare pid written by something else; None if garbage."""
        text = text.strip()
        if text.isdigit():
            return cls(pid=int(text))
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                start_ticks=data.get("start_ticks"),
                log_offset=int(data.get("log_offset", 0)),
                started_at=float(data.get("started_at", 0.0)),
                argv=tuple(data.get("argv", ())),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def _start_ticks(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_age_s(pid_path: Path) -> float | None:
    """Seconds since the process a pid file names was started; None if it is not running or
    the file (a bare pid, written by something else) does not say when.

    Args:
        pid_path: A pid file written by :class:`ManagedProcess`.
    """
    try:
        record = PidRecord.parse(pid_path.read_text())
    except OSError:
        return None
    if record is None or not record.started_at or not _alive(record):
        return None
    return max(0.0, time.time() - record.started_at)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(record: PidRecord) -> bool:
    child = _CHILDREN.get(record.pid)
    if child is not None:
        return child.poll() is None
    if not _pid_exists(record.pid):
        return False
    fields = _proc_stat(record.pid)
    if fields is None:
        # No /proc (macOS): kill(pid, 0) is all we can know.
        return True
    if fields[0] == "Z":
        return False
    return record.start_ticks is None or fields[19] == record.start_ticks


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields is not None and len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def read_log_tail(path: Path, lines: int = 30, offset: int = 0) -> str:
    """Return the last ``lines`` lines of ``path`` written after byte ``offset`` ('' if none)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - _TAIL_BYTES) if size >= offset else 0)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A detached server process, tracked through a pid file and logging to a file.

    Attributes:
        name: Human name used in messages ("kafka", "gateway").
        argv: Command line; ``argv[0]`` is looked up on PATH.
        log_path: stdout and stderr are appended here, each start preceded by a header line.
        pid_path: JSON pid file (see :class:`PidRecord`).
        env: Extra environment variables, laid over ``os.environ`` unless ``inherit_env`` is False.
        cwd: Working directory of the child.
        ready: Default readiness check for :meth:`wait_ready`; it may raise, which counts as
            "not ready yet".
        inherit_env: Whether the child starts from this process's environment.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    pid_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    inherit_env: bool = True
    _last_record: PidRecord | None = field(default=None, init=False, repr=False)

    def _record(self) -> PidRecord | None:
        try:
            record = PidRecord.parse(self.pid_path.read_text())
        except OSError:
            record = None
        if record is not None:
            self._last_record = record
        return record

    def pid(self) -> int | None:
        """Return the pid of the running process, or None if it is not running."""
        record = self._record()
        return record.pid if record is not None and _alive(record) else None

    def is_running(self) -> bool:
        """Whether the process in the pid file is alive (and is still the one we started)."""
        return self.pid() is not None

    def returncode(self) -> int | None:
        """Exit status of the last run if it was started by this interpreter and has exited."""
        record = self._last_record
        child = _CHILDREN.get(record.pid) if record is not None else None
        return child.poll() if child is not None else None

    def start(self) -> int:
        """Start the process detached (own session, stdin closed, output to the log); return pid.

        The child survives this interpreter: a CLI invocation starts a server and exits.

        Raises:
            StackError: It is already running, or the executable cannot be launched.
        """
        running = self.pid()
        if running is not None:
            raise StackError(f"{self.name} is already running (pid {running})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) if self.inherit_env else {}
        env.update(self.env or {})
        argv = [str(a) for a in self.argv]
        with self.log_path.open("ab") as log:
            offset = log.tell()
            stamp = datetime.now().isoformat(timespec="seconds")
            log.write(f"----- {stamp} starting {self.name}: {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                msg = f"cannot start {self.name}: {exc}"
                raise StackError(msg, log_path=self.log_path) from exc
        _CHILDREN[child.pid] = child
        record = PidRecord(
            pid=child.pid,
            start_ticks=_start_ticks(child.pid),
            log_offset=offset,
            started_at=time.time(),
            argv=tuple(argv),
        )
        # Write-then-rename so a concurrent reader never sees a half-written pid file.
        tmp = self.pid_path.with_name(f".{self.pid_path.name}.{os.getpid()}.tmp")
        tmp.write_text(record.to_json())
        tmp.replace(self.pid_path)
        self._last_record = record
        return child.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the process: SIGTERM to its process group, wait ``timeout`` s, then SIGKILL.

        The whole group is signalled so that wrappers (``uv run``, shells) take their children
        down with them. Returns True if something was running.
        """
        record = self._record()
        if record is None:
            return False
        if not _alive(record):
            self.pid_path.unlink(missing_ok=True)
            return False
        self._signal(record.pid, signal.SIGTERM)
        if not self._wait_gone(record, timeout):
            self._signal(record.pid, signal.SIGKILL)
            self._wait_gone(record, 10.0)
        self.pid_path.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            try:
                is_leader = os.getpgid(pid) == pid
            except ProcessLookupError:
                # The leader is gone but its group may live on; we made it a group leader.
                is_leader = True
            if is_leader:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    @staticmethod
    def _wait_gone(record: PidRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not _alive(record) and not _group_alive(record.pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the log written since the most recent start."""
        record = self._record() or self._last_record
        return read_log_tail(self.log_path, lines, record.log_offset if record else 0)

    def wait_ready(
        self,
        timeout: float,
        check: Callable[[], bool] | None = None,
        interval: float = 0.25,
    ) -> float:
        """Poll ``check`` (default: ``self.ready``) until it returns True; return seconds waited.

        Without any check, being alive counts as ready.

        Raises:
            ProcessDiedError: The process exited first (message carries the log tail).
            ReadyTimeoutError: Still not ready after ``timeout`` seconds (idem).
        """
        probe = check if check is not None else self.ready
        started = time.monotonic()
        last_problem = ""
        while True:
            record = self._record()
            if record is None or not _alive(record):
                code = self.returncode()
                how = f"exited with status {code}" if code is not None else "is not running"
                raise ProcessDiedError(
                    f"{self.name} {how} before becoming ready",
                    log_path=self.log_path,
                    log_tail=self.log_tail(),
                )
            if probe is None:
                return time.monotonic() - started
            try:
                if probe():
                    return time.monotonic() - started
                last_problem = ""
            except Exception as exc:  # a probe failing just means "not ready yet"
                last_problem = f" (last check: {type(exc).__name__}: {exc})"
            elapsed = time.monotonic() - started
            if elapsed >= timeout:
                raise ReadyTimeoutError(
                    f"{self.name} (pid {record.pid}) not ready after {timeout:.0f} s{last_problem}",
                    log_path=self.log_path,
                    log_tail=self.log_tail(),
                )
            time.sleep(min(interval, max(timeout - elapsed, 0.01)))

    def ensure_running(self, timeout: float) -> bool:
        """Start unless already running, then wait until ready; True if this call started it."""
        started = False
        if not self.is_running():
            self.start()
            started = True
        self.wait_ready(timeout)
        return started
