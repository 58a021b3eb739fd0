"""Progress reporting for slow provisioning steps: a spinner on a terminal, timestamped lines in CI.

This is the only module of the stack package that writes to the console.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

__all__ = ["Reporter"]


class Reporter:
    """Reports steps of a provisioning run.

    On a terminal each step is a rich spinner showing its title and elapsed seconds. Elsewhere
    (CI, pytest capture, a pipe) it prints plain timestamped lines, plus a heartbeat line every
    ``heartbeat`` seconds so a CI log shows that a multi-minute build is still alive.

    Args:
        console: Where to write; default is stderr, so that stdout stays free for a command's
            actual output (e.g. ``status --json``).
        interactive: Force spinner (True) or plain lines (False); default: whether the console
            is a terminal.
        heartbeat: Seconds between "still running" lines in plain mode.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        interactive: bool | None = None,
        heartbeat: float = 30.0,
    ) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.interactive = self.console.is_terminal if interactive is None else interactive
        self.heartbeat = heartbeat
        self._write_lock = threading.Lock()

    def _plain(self, message: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._write_lock:
            self.console.file.write(f"[{stamp}] {message}\n")
            self.console.file.flush()

    def info(self, message: str) -> None:
        """Print one line of information."""
        if self.interactive:
            self.console.print(escape(message), highlight=False)
        else:
            self._plain(message)

    @contextmanager
    def step(self, title: str, log_path: Path | None = None) -> Iterator[None]:
        """Report the block as one step: spinner/heartbeat while it runs, then ok or failed.

        Args:
            title: What is happening, e.g. "Building Weaviate v1.39.0 with go install".
            log_path: Where the raw output of the step goes; shown on start (plain mode) and
                on failure.
        """
        started = time.monotonic()
        done = threading.Event()

        def elapsed() -> float:
            return time.monotonic() - started

        if self.interactive:
            status = self.console.status(escape(title), spinner="dots")
            status.start()

            def tick() -> None:
                while not done.wait(1.0):
                    status.update(f"{escape(title)} [dim]{elapsed():.0f} s[/dim]")

        else:
            where = f" (log: {log_path})" if log_path is not None else ""
            self._plain(f"==> {title}{where}")

            def tick() -> None:
                while not done.wait(self.heartbeat):
                    self._plain(f"... still {title[0].lower()}{title[1:]} ({elapsed():.0f} s)")

        ticker = threading.Thread(target=tick, name="stack-progress", daemon=True)
        ticker.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            done.set()
            ticker.join()
            if self.interactive:
                status.stop()
            self._finish(title, elapsed(), ok, log_path)

    def _finish(self, title: str, seconds: float, ok: bool, log_path: Path | None) -> None:
        if ok:
            if self.interactive:
                self.console.print(
                    f"[green]✓[/green] {escape(title)} [dim]({seconds:.1f} s)[/dim]",
                    highlight=False,
                )
            else:
                self._plain(f"ok  {title} ({seconds:.1f} s)")
            return
        where = f"; log: {log_path}" if log_path is not None else ""
        if self.interactive:
            self.console.print(
                f"[red]✗[/red] {escape(title)} failed after {seconds:.1f} s{escape(where)}",
                highlight=False,
            )
        else:
            self._plain(f"FAILED  {title} after {seconds:.1f} s{where}")
