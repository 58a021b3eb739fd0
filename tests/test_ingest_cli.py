"""``ragstream ingest --wait`` on the real platform: a folder in, every document indexed."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest

from ragstream_cli.__main__ import main
from ragstream_cli.stack.platform import Platform

pytestmark = pytest.mark.stack


def _write_folder(root: Path, token: str) -> list[str]:
    """Write a Markdown file, a text file and three JSON lines; return the expected doc ids."""
    run = root / f"run-{token}"
    run.mkdir(parents=True)
    (run / "tides.md").write_text(
        f"# Tide tables {token}\n\nThe harbour office publishes tide tables every Monday.\n\n"
        "## Spring tides\n\nSpring tides follow the new and the full moon.\n",
        encoding="utf-8",
    )
    (run / "ferries.txt").write_text(
        f"Ferry notes {token}. The morning ferry leaves at seven and returns at noon.\n",
        encoding="utf-8",
    )
    lines = [
        {"doc_id": f"{token}-faq-1", "title": "Moorings", "content": "Moorings cost 12 a night."},
        {
            "doc_id": f"{token}-faq-2",
            "title": "Fuel",
            "content": "# Fuel\n\nDiesel is sold at the north quay.",
            "content_type": "text/markdown",
            "tags": ["faq"],
        },
        {"title": "Showers", "content": f"Showers {token} are open from six to ten."},
    ]
    (run / "faq.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return [
        f"run-{token}/tides.md",
        f"run-{token}/ferries.txt",
        f"{token}-faq-1",
        f"{token}-faq-2",
        f"run-{token}/faq.jsonl:3",
    ]


class TestIngestCommand:
    def test_folder_is_published_indexed_and_measured(
        self, platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every file and line of a folder is indexed, visible in the gateway, with rates."""
        token = uuid.uuid4().hex[:10]
        doc_ids = _write_folder(tmp_path, token)
        code = main(
            [
                "ingest",
                str(tmp_path),
                "--wait",
                "--kafka",
                platform.kafka_bootstrap,
                "--timeout",
                "300",
                "--no-progress",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "documents/s" in out
        assert "chunks/s" in out
        summary = re.search(r"Indexed (\d+) of (\d+) documents, (\d+) chunks", out)
        assert summary is not None, out
        assert summary.group(1, 2) == ("5", "5")

        chunks = 0
        with httpx.Client(base_url=platform.gateway_url, timeout=10) as client:
            for doc_id in doc_ids:
                response = client.get(f"/v1/documents/{urllib.parse.quote(doc_id, safe='/')}")
                assert response.status_code == 200, (doc_id, response.text)
                status = response.json()
                assert status["indexed"] is True, status
                assert status["chunk_count"] >= 1, status
                assert "indexed" in status["timestamps"], status
                chunks += status["chunk_count"]
        assert int(summary.group(3)) == chunks
