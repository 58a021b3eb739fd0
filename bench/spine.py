"""Issue-2 figures on the running platform: freshness of one document and one query's latency.

Usage: ``.venv/bin/python bench/spine.py [--gateway URL] [--queries 20]`` (after ``make up``).
Prints the time from publishing one document to its first being queryable (GET status says
indexed and a query cites it), and the gateway's latency for one query: the median of N runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import httpx


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    token = uuid.uuid4().hex[:8]
    content = (
        f"The Brackenfold-{token} ferry leaves the north pier at 07:40 every weekday. "
        f"Its captain is Ilse Marrow-{token}, who has sailed the route since 2011."
    )
    question = f"Who is the captain of the Brackenfold-{token} ferry?"
    with httpx.Client(base_url=args.gateway, timeout=60) as client:
        started = time.perf_counter()
        doc_id = client.post("/v1/documents", json={"content": content}).json()["doc_id"]
        while True:
            status = client.get(f"/v1/documents/{doc_id}")
            if status.status_code == 200 and status.json()["indexed"]:
                break
            if time.perf_counter() - started > 120:
                raise SystemExit("not indexed within 120 s")
            time.sleep(0.02)
        freshness_ms = (time.perf_counter() - started) * 1000
        latencies = []
        stage_totals: dict[str, list[float]] = {}
        for _ in range(args.queries):
            begun = time.perf_counter()
            body = client.post("/v1/query", json={"query": question}).json()
            latencies.append((time.perf_counter() - begun) * 1000)
            assert doc_id in {c["doc_id"] for c in body["citations"]}, body
            for stage, ms in body["timings"].items():
                stage_totals.setdefault(stage, []).append(ms)
    print(f"freshness (publish -> indexed, one document): {freshness_ms:.0f} ms")
    print(
        f"query latency over {args.queries} queries: median {statistics.median(latencies):.1f} ms,"
        f" min {min(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    for stage, values in sorted(stage_totals.items()):
        print(f"  {stage:>22}: median {statistics.median(values):.1f} ms")


if __name__ == "__main__":
    main()
