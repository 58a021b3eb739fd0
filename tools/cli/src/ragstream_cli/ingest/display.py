"""How ``ragstream ingest`` shows its progress: bars on a terminal, periodic lines elsewhere.

Progress goes to stderr, so that stdout holds the summary alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Counters", "DisplayMode", "ProgressDisplay", "human_bytes"]

DisplayMode = Literal["bar", "lines", "off"]

# In a CI log, a line this often shows the run is alive without flooding the log.
_PLAIN_INTERVAL_S = 5.0


@dataclass
class Counters:
    """What the run has done so far, read by the progress display and the summary."""

    total: int
    # Publishes of a doc id already published in this run: one document, published again.
    repeats: int = 0
    published: int = 0
    published_bytes: int = 0
    indexed: int = 0
    failed: int = 0
    chunks: int = 0

    @property
    def settled(self) -> int:
        """Documents with an outcome, indexed or failed."""
        return self.indexed + self.failed

    @property
    def documents(self) -> int:
        """Distinct documents to index: publishes less repeats."""
        return self.total - self.repeats


def human_bytes(size: int) -> str:
    """Return ``size`` in kB or MB, as the progress and the summary print it."""
    return f"{size / 1_000_000:.2f} MB" if size >= 10_000 else f"{size / 1000:.1f} kB"


class ProgressDisplay:
    """Progress bars on a terminal, a plain line every few seconds elsewhere, or nothing.

    Args:
        counters: The numbers to show.
        mode: ``bar``, ``lines`` or ``off``.
        wait: Whether to show the indexing progress too.
        console: Where to draw; stderr by default.
    """

    def __init__(
        self,
        counters: Counters,
        *,
        mode: DisplayMode,
        wait: bool,
        console: Console | None = None,
    ) -> None:
        self.counters = counters
        self.mode = mode
        self.wait = wait
        self.console = console or Console(stderr=True, soft_wrap=True)
        self._progress: Progress | None = None
        self._publish_task: TaskID | None = None
        self._index_task: TaskID | None = None
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Show the bars, or start the periodic lines."""
        if self.mode == "bar":
            self._progress = Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._publish_task = self._progress.add_task(
                "published", total=self.counters.total, detail=""
            )
            if self.wait:
                self._index_task = self._progress.add_task(
                    "indexed", total=self.counters.documents, detail=""
                )
            self._progress.start()
        elif self.mode == "lines":
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_PLAIN_INTERVAL_S)
            self._line()

    def _line(self) -> None:
        c = self.counters
        text = (
            f"[{time.strftime('%H:%M:%S')}] published {c.published}/{c.total} documents "
            f"({human_bytes(c.published_bytes)})"
        )
        if self.wait:
            text += f"; indexed {c.indexed}/{c.documents}, {c.chunks} chunks, {c.failed} failed"
        self.console.print(text, highlight=False, markup=False)

    def update(self) -> None:
        """Redraw from the counters."""
        if self._progress is None or self._publish_task is None:
            return
        c = self.counters
        self._progress.update(
            self._publish_task,
            total=c.total,
            completed=c.published,
            detail=human_bytes(c.published_bytes),
        )
        if self._index_task is not None:
            failed = f", {c.failed} failed" if c.failed else ""
            self._progress.update(
                self._index_task,
                total=c.documents,
                completed=c.settled,
                detail=f"{c.chunks} chunks{failed}",
            )

    def stop(self) -> None:
        """Draw the final state and stop."""
        if self._progress is not None:
            self.update()
            self._progress.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            self._line()
