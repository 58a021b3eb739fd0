"""Where the stack keeps things.

Two roots, on purpose:

* installs (jars, binaries) are shared per machine under ``${RAGSTREAM_HOME:-~/.cache/ragstream}``,
  one directory per component and version, so every checkout reuses one multi-minute build;
* state (data, logs, pid files) is per checkout under ``<repo>/.stack/<component>/``
  (or ``$RAGSTREAM_STACK_DIR/<component>/``), so two checkouts never share a Kafka log dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from ragstream_cli.stack.errors import StackError

__all__ = ["cache_home", "component_dir", "find_repo_root", "install_dir", "repo_root", "stack_dir"]

_REPO_MARKER = "uv.lock"


def find_repo_root(start: Path) -> Path | None:
    """Return the nearest directory at or above ``start`` holding ``uv.lock``, or None."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / _REPO_MARKER).is_file():
            return candidate
    return None


def repo_root() -> Path:
    """Return the workspace root (the directory with ``uv.lock``) this package lives in.

    Raises:
        StackError: The package is installed outside a checkout and RAGSTREAM_STACK_DIR is unset.
    """
    root = find_repo_root(Path(__file__).parent)
    if root is None:
        raise StackError(
            f"cannot find the repository root ({_REPO_MARKER}) above {Path(__file__).parent}; "
            "set RAGSTREAM_STACK_DIR to choose where the stack keeps its data"
        )
    return root


def stack_dir() -> Path:
    """Return the per-checkout state directory (``$RAGSTREAM_STACK_DIR`` or ``<repo>/.stack``)."""
    override = os.environ.get("RAGSTREAM_STACK_DIR", "").strip()
    if override:
        return Path(override).expanduser().resolve()
    return repo_root() / ".stack"


def component_dir(component: str) -> Path:
    """Return (and create) ``<stack dir>/<component>`` for data, logs and the pid file."""
    path = stack_dir() / component
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_home() -> Path:
    """Return the machine-wide install root (``$RAGSTREAM_HOME`` or ``~/.cache/ragstream``)."""
    override = os.environ.get("RAGSTREAM_HOME", "").strip()
    base = Path(override) if override else Path.home() / ".cache" / "ragstream"
    return base.expanduser().resolve()


def install_dir(component: str, version: str) -> Path:
    """Return the (possibly not yet existing) install directory of ``component`` at ``version``."""
    return cache_home() / f"{component}-{version}"
