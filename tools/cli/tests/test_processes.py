"""ManagedProcess: detached start, pid file, liveness, stop escalation, readiness reporting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ragstream_cli.stack.errors import ProcessDiedError, ReadyTimeoutError, StackError
from ragstream_cli.stack.processes import ManagedProcess, PidRecord, process_age_s, read_log_tail

SLEEP = "import time; print('sleeping', flush=True); time.sleep(60)"
MakeProcess = Callable[..., ManagedProcess]


def _log_contains(proc: ManagedProcess, text: str) -> Callable[[], bool]:
    """Check for ``text`` in the child's output, ignoring our header (which quotes the code)."""

    def check() -> bool:
        lines = proc.log_path.read_text().splitlines()
        return any(text in line for line in lines if not line.startswith("----- "))

    return check


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_start_writes_pid_file_and_runs_detached(make_process: MakeProcess) -> None:
    """start() returns the pid, records it in the pid file, and runs the child in a new session."""
    proc = make_process(SLEEP)
    pid = proc.start()
    assert proc.is_running()
    assert proc.pid() == pid
    record = PidRecord.parse(proc.pid_path.read_text())
    assert record is not None
    assert record.pid == pid
    assert os.getsid(pid) == pid


def test_a_child_left_running_at_exit_raises_no_warning(tmp_path: Path) -> None:
    """An interpreter that starts a server and exits leaves it running, without a ResourceWarning.

    ``-W default`` shows ResourceWarnings, as importing weaviate-client does in the benchmark.
    """
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ragstream_cli.stack.processes import ManagedProcess\n"
        "folder = Path(sys.argv[1])\n"
        "process = ManagedProcess(name='sleeper', argv=[sys.executable, '-c', sys.argv[2]],"
        " log_path=folder / 'sleeper.log', pid_path=folder / 'sleeper.pid')\n"
        "print(process.start())\n"
    )
    finished = subprocess.run(
        [sys.executable, "-W", "default", "-c", code, str(tmp_path), SLEEP],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(finished.stdout)
    try:
        assert _pid_alive(pid)
        assert "ResourceWarning" not in finished.stderr
    finally:
        os.kill(pid, 9)


def test_output_goes_to_log_after_a_header(make_process: MakeProcess) -> None:
    """stdout and stderr of the child are appended to the log file after a 'starting' header."""
    code = "import sys, time; print('out'); print('err', file=sys.stderr); time.sleep(60)"
    proc = make_process(code)
    proc.start()
    proc.wait_ready(5, check=_log_contains(proc, "err"))
    text = proc.log_path.read_text()
    assert "starting sleeper:" in text
    assert "out" in text


def test_stop_terminates_and_removes_pid_file(make_process: MakeProcess) -> None:
    """stop() ends a running process with SIGTERM, deletes the pid file and returns True."""
    proc = make_process(SLEEP)
    pid = proc.start()
    assert proc.stop(timeout=5) is True
    assert not proc.is_running()
    assert not _pid_alive(pid)
    assert not proc.pid_path.exists()


def test_stop_when_not_running_returns_false(make_process: MakeProcess) -> None:
    """stop() on a never-started process is a no-op returning False."""
    assert make_process(SLEEP).stop() is False


def test_stop_escalates_to_sigkill(make_process: MakeProcess) -> None:
    """A process ignoring SIGTERM is SIGKILLed once the stop timeout expires."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('armed', flush=True); time.sleep(60)"
    )
    proc = make_process(code)
    pid = proc.start()
    proc.wait_ready(5, check=_log_contains(proc, "armed"))
    started = time.monotonic()
    assert proc.stop(timeout=0.5) is True
    assert not _pid_alive(pid)
    assert 0.5 <= time.monotonic() - started < 5


def test_stop_takes_down_the_whole_process_group(make_process: MakeProcess) -> None:
    """Grandchildren (e.g. under `uv run`) die with the process, since its group is signalled."""
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('grandchild', c.pid, flush=True); time.sleep(60)"
    )
    proc = make_process(code)
    proc.start()

    def grandchild_line() -> str | None:
        lines = proc.log_path.read_text().splitlines()
        return next((x for x in lines if x.startswith("grandchild ")), None)

    proc.wait_ready(5, check=lambda: grandchild_line() is not None)
    line = grandchild_line()
    assert line is not None
    grandchild = int(line.split()[1])
    assert _pid_alive(grandchild)
    proc.stop(timeout=5)
    assert not _pid_alive(grandchild)


def test_start_refuses_when_already_running(make_process: MakeProcess) -> None:
    """Starting twice raises instead of spawning a second copy."""
    proc = make_process(SLEEP)
    proc.start()
    with pytest.raises(StackError, match="already running"):
        proc.start()


def test_state_is_shared_through_the_pid_file(make_process: MakeProcess, tmp_path: Path) -> None:
    """A second ManagedProcess on the same pid file (e.g. a later CLI call) sees and stops it."""
    proc = make_process(SLEEP)
    pid = proc.start()
    other = ManagedProcess(
        name="other", argv=["unused"], log_path=proc.log_path, pid_path=proc.pid_path
    )
    assert other.pid() == pid
    assert other.stop(timeout=5)
    assert not proc.is_running()


def test_dead_pid_in_pid_file_is_not_running(tmp_path: Path) -> None:
    """A pid file left by a process that has exited does not count as running."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pid_path = tmp_path / "x.pid"
    pid_path.write_text(str(child.pid))
    proc = ManagedProcess(name="x", argv=["x"], log_path=tmp_path / "x.log", pid_path=pid_path)
    assert not proc.is_running()
    assert proc.stop() is False
    assert not pid_path.exists()


def test_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    """A live pid whose start time differs from the recorded one (pid reuse) is not ours."""
    pid_path = tmp_path / "x.pid"
    pid_path.write_text(PidRecord(pid=os.getpid(), start_ticks="1").to_json())
    proc = ManagedProcess(name="x", argv=["x"], log_path=tmp_path / "x.log", pid_path=pid_path)
    assert not proc.is_running()


def test_process_age_counts_from_the_start_of_the_running_process(
    make_process: MakeProcess, tmp_path: Path
) -> None:
    """The age of a running process grows from about zero; nothing runs, no age."""
    proc = make_process(SLEEP)
    assert process_age_s(proc.pid_path) is None
    proc.start()
    first = process_age_s(proc.pid_path)
    assert first is not None
    assert 0 <= first < 30
    time.sleep(0.3)
    later = process_age_s(proc.pid_path)
    assert later is not None
    assert later >= first + 0.2
    proc.stop(timeout=5)
    assert process_age_s(proc.pid_path) is None
    # A bare pid (another tool's pid file) is alive but does not say when it started.
    bare = tmp_path / "bare.pid"
    bare.write_text(str(os.getpid()))
    assert process_age_s(bare) is None


def test_child_that_exits_is_not_running(make_process: MakeProcess) -> None:
    """A child of this interpreter that exited (an unreaped zombie) reports not running."""
    proc = make_process("import sys; sys.exit(3)")
    proc.start()
    deadline = time.monotonic() + 5
    while proc.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc.is_running()
    assert proc.returncode() == 3


def test_wait_ready_returns_when_check_passes(make_process: MakeProcess) -> None:
    """wait_ready() returns the seconds waited once the readiness check is True."""
    proc = make_process(SLEEP)
    proc.ready = _log_contains(proc, "sleeping")
    proc.start()
    assert proc.wait_ready(5) < 5


def test_wait_ready_reports_death_with_log_tail(make_process: MakeProcess) -> None:
    """If the process dies first, ProcessDiedError carries its exit status and last log lines."""
    code = "import sys; [print('line', i) for i in range(100)]; sys.exit(7)"
    proc = make_process(code, ready=lambda: False)
    proc.start()
    with pytest.raises(ProcessDiedError) as info:
        proc.wait_ready(10)
    message = str(info.value)
    assert "exited with status 7" in message
    assert "line 99" in message
    assert "line 60" not in message  # only the last 30 lines
    assert str(proc.log_path) in message
    assert info.value.log_path == proc.log_path


def test_wait_ready_times_out_with_log_tail_and_last_error(make_process: MakeProcess) -> None:
    """A live but never-ready process raises ReadyTimeoutError with the log tail and probe error."""

    def failing_probe() -> bool:
        raise ConnectionRefusedError("nobody home")

    proc = make_process(SLEEP, ready=failing_probe)
    proc.start()
    proc.wait_ready(5, check=_log_contains(proc, "sleeping"))
    with pytest.raises(ReadyTimeoutError) as info:
        proc.wait_ready(0.5)
    message = str(info.value)
    assert "not ready after" in message
    assert "nobody home" in message
    assert "sleeping" in message


def test_log_tail_only_covers_the_latest_run(make_process: MakeProcess) -> None:
    """After a restart, the log tail quoted in errors excludes the previous run's output."""
    proc = make_process("print('first-run')")
    proc.start()
    proc.argv = [
        sys.executable,
        "-c",
        "import time; print('second-run', flush=True); time.sleep(60)",
    ]
    deadline = time.monotonic() + 5
    while proc.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.start()
    proc.wait_ready(5, check=_log_contains(proc, "second-run"))
    tail = proc.log_tail()
    assert "second-run" in tail
    assert "first-run" not in tail


def test_read_log_tail_of_missing_file_is_empty(tmp_path: Path) -> None:
    """Reading the tail of a log that does not exist yet gives an empty string, not an error."""
    assert read_log_tail(tmp_path / "nope.log") == ""


def test_ensure_running_starts_once(make_process: MakeProcess) -> None:
    """ensure_running() starts a stopped process and is a no-op on a running one."""
    proc = make_process(SLEEP)
    assert proc.ensure_running(5) is True
    pid = proc.pid()
    assert proc.ensure_running(5) is False
    assert proc.pid() == pid


def test_unlaunchable_executable_raises_stack_error(make_process: MakeProcess) -> None:
    """A missing executable fails at start() with a StackError naming the process."""
    proc = make_process("", name="ghost", argv=["/nonexistent/ghost-binary"])
    with pytest.raises(StackError, match="cannot start ghost"):
        proc.start()
