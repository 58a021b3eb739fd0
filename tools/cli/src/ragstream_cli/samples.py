"""Loading the bundled sample corpus through the gateway and asking it a question."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["SAMPLE_QUESTION", "SampleLoad", "ask", "load_samples"]

SAMPLE_QUESTION = "When was the Kessock Point lighthouse first lit?"

_CONTENT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain"}


@dataclass(frozen=True)
class SampleLoad:
    """What loading the corpus did."""

    documents: int
    chunks: int
    seconds: float


def _title(path: Path, text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def load_samples(gateway_url: str, corpus: Path, timeout: float = 300.0) -> SampleLoad:
    """Publish every document of ``corpus`` through the gateway and wait until all are indexed.

    Document ids are the file names, so loading twice publishes the same documents again
    (idempotent downstream) instead of adding copies.

    Args:
        gateway_url: The gateway's base URL.
        corpus: A folder of .md/.txt files.
        timeout: Seconds to wait for all of them to be indexed.
    """
    started = time.monotonic()
    paths = sorted(p for p in corpus.iterdir() if p.suffix in _CONTENT_TYPES)
    with httpx.Client(base_url=gateway_url, timeout=30.0) as client:
        doc_ids = []
        for path in paths:
            text = path.read_text(encoding="utf-8")
            response = client.post(
                "/v1/documents",
                json={
                    "doc_id": f"sample-{path.stem}",
                    "title": _title(path, text),
                    "content": text,
                    "content_type": _CONTENT_TYPES[path.suffix],
                    "source": f"samples/corpus/{path.name}",
                },
            )
            response.raise_for_status()
            doc_ids.append(response.json()["doc_id"])
        pending = set(doc_ids)
        chunks = 0
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not indexed within {timeout:.0f} s: {sorted(pending)}")
            for doc_id in sorted(pending):
                status = client.get(f"/v1/documents/{doc_id}")
                if status.status_code == 200 and status.json()["indexed"]:
                    pending.discard(doc_id)
                    chunks += int(status.json().get("chunk_count") or 0)
                elif status.status_code == 200 and status.json()["stage"] == "failed":
                    raise RuntimeError(f"{doc_id} failed: {status.json().get('reason')}")
            time.sleep(0.2)
    return SampleLoad(len(doc_ids), chunks, time.monotonic() - started)


def ask(gateway_url: str, question: str, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the gateway ``question`` and return its JSON answer."""
    response = httpx.post(f"{gateway_url}/v1/query", json={"query": question}, timeout=timeout)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body
