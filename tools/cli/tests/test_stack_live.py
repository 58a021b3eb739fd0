"""The real stack: Kafka and Weaviate installed, started (or reused) and answering."""

from __future__ import annotations

import pytest

from ragstream_cli.stack import (
    ensure_kafka,
    ensure_weaviate,
    kafka_bootstrap,
    kafka_ready,
    status,
    weaviate_ready,
    weaviate_url,
)


@pytest.mark.stack
def test_kafka_and_weaviate_are_ensured_and_reused() -> None:
    """ensure_* brings both servers up; a second call reuses them within a second."""
    kafka_first = ensure_kafka()
    weaviate_first = ensure_weaviate()
    assert kafka_first.status.running
    assert weaviate_first.status.running

    kafka_again = ensure_kafka()
    weaviate_again = ensure_weaviate()
    assert kafka_again.action == "reused"
    assert weaviate_again.action == "reused"
    assert kafka_again.seconds < 1.0
    assert weaviate_again.seconds < 1.0

    assert kafka_ready(kafka_bootstrap())
    assert weaviate_ready(weaviate_url())
    current = status()
    assert current["kafka"].running
    assert current["weaviate"].running
    # Deliberately no stop: the stack is shared with the rest of the test session and other users.
