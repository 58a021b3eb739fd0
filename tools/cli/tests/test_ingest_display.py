"""Tests for how ``ragstream ingest`` shows progress: bars, plain lines, or nothing."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ragstream_cli.ingest.display import Counters, DisplayMode, ProgressDisplay, human_bytes


def _shown(mode: DisplayMode, wait: bool = True, terminal: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    counters = Counters(total=4, published=3, published_bytes=2_500_000, indexed=2, chunks=9)
    display = ProgressDisplay(counters, mode=mode, wait=wait, console=console)
    display.start()
    display.update()
    display.stop()
    return out.getvalue()


class TestProgressDisplay:
    async def test_plain_lines_carry_the_counts(self) -> None:
        """Off a terminal, progress is a plain line with published, bytes, indexed and chunks."""
        text = _shown("lines")
        assert "published 3/4 documents (2.50 MB); indexed 2/4, 9 chunks, 0 failed" in text
        assert "\x1b[" not in text

    async def test_plain_lines_leave_out_indexing_without_wait(self) -> None:
        """Without --wait the line reports publishing only."""
        assert "indexed" not in _shown("lines", wait=False)

    async def test_bars_show_both_phases(self) -> None:
        """On a terminal there is a bar for published and one for indexed documents."""
        text = _shown("bar", terminal=True)
        assert "published" in text
        assert "indexed" in text
        assert "9 chunks" in text

    async def test_off_shows_nothing(self) -> None:
        """--no-progress draws nothing at all."""
        assert _shown("off") == ""


class TestHumanBytes:
    @pytest.mark.parametrize(
        ("size", "text"), [(0, "0.0 kB"), (1_500, "1.5 kB"), (2_500_000, "2.50 MB")]
    )
    def test_small_sizes_in_kb_large_in_mb(self, size: int, text: str) -> None:
        """Sizes read naturally: kilobytes below 10 kB, megabytes above."""
        assert human_bytes(size) == text
