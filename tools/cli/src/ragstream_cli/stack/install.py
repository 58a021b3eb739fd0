"""Installing components: tool checks, logged subprocess steps, and atomic install directories.

An install directory is built under a temporary name next to its final place and renamed into
place only once complete, with a marker file inside; a directory without the marker (from an
older, interrupted layout or a manual copy) is never used, only rebuilt.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from ragstream_cli.stack.errors import InstallError, MissingToolError
from ragstream_cli.stack.processes import read_log_tail
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.sysutil import file_lock

T = TypeVar("T")

__all__ = [
    "INSTALL_MARKER",
    "apt_install",
    "apt_knows",
    "atomic_install",
    "is_installed",
    "java_major_version",
    "require_tool",
    "run_logged",
]

INSTALL_MARKER = ".ragstream-installed"
_TAIL_LINES = 30


def require_tool(name: str, purpose: str, hint: str) -> str:
    """Return the absolute path of executable ``name`` on PATH.

    Raises:
        MissingToolError: It is not on PATH; the message says what it is for and how to get it.
    """
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(f"`{name}` not found on PATH: it is needed to {purpose}. {hint}")
    return found


def java_major_version(java: str) -> int:
    """Return the major version of the JVM at ``java`` (8 for "1.8.0_x", 17 for "17.0.15").

    Raises:
        MissingToolError: ``java -version`` fails or prints something unrecognisable.
    """
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MissingToolError(f"`{java} -version` failed: {exc}") from exc
    # The JVM prints its version on stderr, e.g. 'openjdk version "17.0.15" 2025-04-15'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise MissingToolError(f"cannot read the Java version from: {out.stderr.strip()!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        major = int(match.group(2))
    return major


def run_logged(
    argv: Sequence[str],
    *,
    log_path: Path,
    title: str,
    reporter: Reporter,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """Run a build/install command as a reported step, its output appended to ``log_path``.

    Returns the seconds it took.

    Raises:
        InstallError: Non-zero exit; the message carries the log path and its last 30 lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    started = time.monotonic()
    with reporter.step(title, log_path=log_path), log_path.open("ab") as log:
        offset = log.tell()
        stamp = datetime.now().isoformat(timespec="seconds")
        log.write(f"----- {stamp} {title}: {shlex.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
        )
        try:
            code = child.wait()
        except BaseException:
            # Ctrl-C or a test timeout: do not leave a build running behind us.
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        if code != 0:
            log.flush()
            raise InstallError(
                f"{title} failed (exit status {code})",
                log_path=log_path,
                log_tail=read_log_tail(log_path, _TAIL_LINES, offset),
            )
    return time.monotonic() - started


def is_installed(target: Path) -> bool:
    """Whether ``target`` is a finished install (it holds the marker file)."""
    return (target / INSTALL_MARKER).is_file()


def atomic_install(target: Path, build: Callable[[Path], None], describe: str) -> bool:
    """Build ``target`` via ``build(tmp_dir)`` into a temp dir, then rename it into place.

    Concurrent callers (other checkouts, parallel tests) serialise on a lock file beside
    ``target``; the ones that waited find the install done and return at once. Leftovers of an
    interrupted install are deleted first.

    Args:
        target: Final install directory.
        build: Fills the directory it is given; raises on failure.
        describe: Free text stored in the marker file (what was installed, how).

    Returns:
        True if this call installed it, False if it was already there.
    """
    if is_installed(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if is_installed(target):
            return False
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            stamp = datetime.now().isoformat(timespec="seconds")
            marker = {"installed_at": stamp, "what": describe}
            (tmp / INSTALL_MARKER).write_text(json.dumps(marker) + "\n")
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


# How long apt-get waits for another apt or dpkg to let go of its lock before giving up.
_APT_LOCK_TIMEOUT_S = 300


def apt_knows(package: str) -> bool:
    """Whether apt-cache has an install candidate for ``package`` (no package lists: False)."""
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        return False
    try:
        out = subprocess.run(
            [apt_cache, "policy", package], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return False
    match = re.search(r"Candidate:\s*(\S+)", out.stdout)
    return match is not None and match.group(1) != "(none)"


def apt_install(
    package: str,
    *,
    find: Callable[[], T | None],
    absent: str,
    manual: str,
    log_path: Path,
    lock_path: Path,
    reporter: Reporter,
) -> T:
    """Return what Debian's ``package`` provides, installing it with apt-get first if need be.

    ``apt-get update`` runs only when apt-cache knows no candidate for the package (a fresh
    image has no package lists). Callers serialise on ``lock_path``; one that waited finds the
    package installed and returns.

    Args:
        package: The Debian package.
        find: Looks for what the package provides (None when it is not there).
        absent: What is missing, for the errors ("`redis-server` is not on PATH").
        manual: How to install it by hand.
        log_path: Where apt-get's output goes.
        lock_path: The lock file callers serialise on.
        reporter: Progress output.

    Raises:
        MissingToolError: apt-get is missing, or we are not root.
        InstallError: apt-get failed (the message has ``log_path`` and its tail), or what it
            installed is still not found.
    """
    found = find()
    if found is not None:
        return found
    apt = require_tool("apt-get", f"install {package} from Debian's packages", manual)
    if os.geteuid() != 0:
        raise MissingToolError(f"{absent}, and installing it with apt-get needs root. {manual}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with file_lock(lock_path):
        found = find()
        if found is not None:
            return found
        if not apt_knows(package):
            run_logged(
                [apt, "update"],
                log_path=log_path,
                title="Updating Debian's package lists (first time only)",
                reporter=reporter,
                env=env,
            )
        run_logged(
            [
                apt,
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                f"DPkg::Lock::Timeout={_APT_LOCK_TIMEOUT_S}",
                package,
            ],
            log_path=log_path,
            title=f"Installing {package} from Debian's packages (first time only)",
            reporter=reporter,
            env=env,
        )
    found = find()
    if found is None:
        raise InstallError(
            f"apt-get installed {package}, but {absent} ({os.environ.get('PATH', '')})",
            log_path=log_path,
        )
    return found
