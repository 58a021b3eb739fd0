"""Tests for the ``ragstream ingest`` command: usage errors, exit codes and the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragstream_cli.__main__ import main
from ragstream_cli.ingest.command import EXIT_FAILED, EXIT_USAGE, summary_lines
from ragstream_cli.ingest.display import Counters
from ragstream_cli.ingest.publisher import IngestReport
from ragstream_cli.ingest.sources import Problem


def _report(wait: bool = True, **fields: Any) -> IngestReport:
    counters = Counters(
        total=10, published=10, published_bytes=25_000, indexed=10, chunks=40, repeats=0
    )
    report = IngestReport(counters=counters, wait=wait, publish_seconds=0.5, total_seconds=4.0)
    for name, value in fields.items():
        setattr(report, name, value)
    return report


class TestSummaryLines:
    def test_reports_publish_and_end_to_end_rates(self) -> None:
        """With --wait the summary gives documents/s for publishing and documents/s, chunks/s
        end to end."""
        text = "\n".join(summary_lines(_report()))
        assert "Published 10 documents (0.03 MB) in 0.50 s: 20.0 documents/s." in text
        assert "Indexed 10 of 10 documents, 40 chunks, in 4.00 s end to end" in text
        assert "2.5 documents/s, 10.0 chunks/s." in text

    def test_without_wait_chunks_are_unknown(self) -> None:
        """Without --wait the chunk rate cannot be known and says so."""
        lines = summary_lines(_report(wait=False))
        assert lines[-1] == "Not waiting for the index (add --wait): chunks/s n/a."
        assert not any(line.startswith("Indexed") for line in lines)

    def test_lists_skipped_invalid_failed_and_timed_out(self) -> None:
        """Every document that did not get in is listed with its reason."""
        lines = summary_lines(
            _report(
                skipped=[Problem("a.png", "unsupported type .png", skipped=True)],
                invalid=[Problem("d.jsonl:2", "not JSON")],
                failed=[Problem("r.pdf", "no text in PDF")],
                timed_out=["slow.md"],
            )
        )
        for expected in (
            "Skipped 1 files:",
            "  a.png: unsupported type .png",
            "Not published, 1 documents:",
            "  d.jsonl:2: not JSON",
            "Failed, 1 documents:",
            "  r.pdf: no text in PDF",
            "Not indexed in time, 1 documents:",
            "  slow.md",
        ):
            assert expected in lines

    def test_long_lists_are_cut_short(self) -> None:
        """Beyond twenty entries a list ends with how many more there are."""
        lines = summary_lines(_report(timed_out=[f"d{n}.md" for n in range(25)]))
        assert "  ... and 5 more" in lines
        assert "  d20.md" not in lines

    def test_repeated_ids_are_mentioned(self) -> None:
        """A doc id published twice in one run is called out, with which one wins."""
        report = _report()
        report.counters.repeats = 2
        assert "2 repeated doc ids: the last occurrence of each wins." in summary_lines(report)


class TestIngestReport:
    @pytest.mark.parametrize(
        ("fields", "succeeded"),
        [
            ({}, True),
            ({"skipped": [Problem("a.png", "unsupported", skipped=True)]}, True),
            ({"invalid": [Problem("d.jsonl:1", "not JSON")]}, False),
            ({"failed": [Problem("r.pdf", "bad")]}, False),
            ({"timed_out": ["a.md"]}, False),
        ],
    )
    def test_success_means_every_document_got_in(
        self, fields: dict[str, Any], succeeded: bool
    ) -> None:
        """Unsupported files do not fail a run; invalid, failed or late documents do."""
        assert _report(**fields).succeeded is succeeded


class TestIngestCommand:
    def test_missing_path_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A path that does not exist exits 2 with a message, before touching Kafka."""
        assert main(["ingest", str(tmp_path / "nope")]) == EXIT_USAGE
        assert "no such file or folder" in capsys.readouterr().err

    def test_only_unsupported_files_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing ingestable exits 2, listing what was skipped."""
        (tmp_path / "photo.png").write_bytes(b"\x89PNG")
        assert main(["ingest", str(tmp_path)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "photo.png" in err
        assert "no supported documents found" in err

    @pytest.mark.parametrize(
        ("options", "message"),
        [(["--tenant", "bad tenant"], "invalid tenant"), (["--timeout", "0"], "--timeout")],
    )
    def test_invalid_options_are_usage_errors(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        options: list[str],
        message: str,
    ) -> None:
        """A tenant the index refuses or a non-positive timeout exits 2."""
        (tmp_path / "a.md").write_text("# A\n")
        assert main(["ingest", str(tmp_path), *options]) == EXIT_USAGE
        assert message in capsys.readouterr().err

    def test_unreachable_kafka_exits_1_with_a_message(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without Kafka the command fails fast with exit code 1 and says why."""
        (tmp_path / "a.md").write_text("# A\n")
        code = main(["ingest", str(tmp_path), "--kafka", "127.0.0.1:1", "--no-progress"])
        assert code == EXIT_FAILED
        assert "cannot reach Kafka" in capsys.readouterr().err

    def test_arguments_are_parsed(self) -> None:
        """Unknown options are argparse usage errors, exit code 2."""
        with pytest.raises(SystemExit) as exit_info:
            main(["ingest", "x", "--no-such-option"])
        assert exit_info.value.code == EXIT_USAGE
