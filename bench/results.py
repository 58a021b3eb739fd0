"""Where results go: the run's environment, one JSON file per benchmark, and the summary table.

Every JSON file carries the same ``environment`` block (cores, versions, git commit, time), so a
figure can always be traced to the machine and the code that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["RESULTS_DIR", "environment", "print_summary", "write_result"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

_PACKAGES = (
    "torch",
    "sentence-transformers",
    "faststream",
    "aiokafka",
    "weaviate-client",
    "litellm",
    "redis",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return what a result depends on: cores, platform, package versions, git commit, time.

    Args:
        extra: More fields, such as the server versions the benchmark saw.
    """
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": {package: _version(package) for package in _PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        # Uncommitted changes make the commit only an approximation of the code that ran.
        "git_dirty": bool(_git("status", "--porcelain")),
        **(extra or {}),
    }


def write_result(name: str, data: dict[str, Any], env: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the environment block; return its path.

    Args:
        name: The benchmark's name.
        data: Its figures, JSON-serialisable.
        env: What ``environment()`` returned.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "environment": env, **data}, indent=2) + "\n")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def print_summary(rows: list[tuple[str, str, Any, str]], console: Console | None = None) -> None:
    """Print the summary table: one row per figure.

    Args:
        rows: (benchmark, figure, value, how it was measured) per row.
        console: Where to print; stdout by default.
    """
    table = Table(title="ragstream benchmarks", title_justify="left")
    for column in ("benchmark", "figure", "value", "measured as"):
        table.add_column(column, overflow="fold")
    for benchmark, figure, value, how in rows:
        table.add_row(benchmark, figure, _cell(value), how)
    # Off a terminal (a log, a pipe) rich assumes 80 columns, too narrow for the figures.
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)
