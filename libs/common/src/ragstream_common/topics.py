"""The topic registry: every topic the platform uses, with its partitions and retention.

One list, read by whatever creates topics (the dev stack, tests, a Strimzi KafkaTopic generator),
so that names, partition counts and retention never drift between places.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ANSWERS",
    "CHUNKS",
    "CONTEXTS",
    "DOCUMENTS",
    "DOCUMENT_STATUS",
    "EMBEDDINGS",
    "FEEDBACK",
    "MAX_MESSAGE_BYTES",
    "QUERIES",
    "TOPICS",
    "TopicSpec",
    "all_topic_specs",
    "dlq_name",
]

DOCUMENTS = "documents"
CHUNKS = "chunks"
EMBEDDINGS = "embeddings"
QUERIES = "queries"
CONTEXTS = "contexts"
ANSWERS = "answers"
DOCUMENT_STATUS = "document-status"
FEEDBACK = "feedback"

_HOUR_MS = 60 * 60 * 1000
_DAY_MS = 24 * _HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name, partition count and topic-level configuration.

    Args:
        name: The topic name.
        partitions: The ceiling on each consumer group's useful replicas.
        config: Kafka topic configs (cleanup.policy, retention.ms, ...).
        consumed: Whether a service consumes it, and so needs a dead-letter topic.
    """

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    consumed: bool = True


def dlq_name(topic: str) -> str:
    """Return the dead-letter topic for ``topic``."""
    return f"{topic}.dlq"


# A document's chunks and vectors travel as one message, so these topics accept large ones.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_LARGE = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
# Kafka never compacts a partition's active segment, and by default that segment rolls after a
# week or 1 GB: until then a compacted topic keeps every record. The status topic then held all
# four stages of every document (140,000 records, 84 MB here), which each gateway replica reads
# whole at startup. max.compaction.lag.ms rolls the segment and compacts its records within the
# hour; min.compaction.lag.ms still lets a consumer up to a minute behind read every record.
_COMPACTED = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": str(60 * 1000),
    "max.compaction.lag.ms": str(_HOUR_MS),
}

TOPICS: tuple[TopicSpec, ...] = (
    # The replayable source of truth: the latest version of every document, forever.
    TopicSpec(DOCUMENTS, partitions=6, config=_COMPACTED | _LARGE),
    TopicSpec(CHUNKS, partitions=6, config={"retention.ms": str(7 * _DAY_MS)} | _LARGE),
    TopicSpec(EMBEDDINGS, partitions=6, config={"retention.ms": str(7 * _DAY_MS)} | _LARGE),
    # Queries and their intermediate results are worthless minutes later.
    TopicSpec(QUERIES, partitions=6, config={"retention.ms": str(_HOUR_MS)}),
    TopicSpec(CONTEXTS, partitions=6, config={"retention.ms": str(_HOUR_MS)}),
    TopicSpec(ANSWERS, partitions=6, config={"retention.ms": str(_HOUR_MS)}),
    # Latest stage per document, read whole by every gateway replica to answer status requests.
    TopicSpec(DOCUMENT_STATUS, partitions=3, config=_COMPACTED),
    # Users' ratings of answers, kept for offline evaluation; no service consumes them yet.
    TopicSpec(FEEDBACK, partitions=3, config={"retention.ms": str(90 * _DAY_MS)}, consumed=False),
)

_DLQ_CONFIG = {"retention.ms": str(30 * _DAY_MS)} | _LARGE


def all_topic_specs() -> list[TopicSpec]:
    """Return every topic to create: the registry plus a dead-letter topic per consumed topic."""
    specs = list(TOPICS)
    specs += [
        TopicSpec(dlq_name(spec.name), partitions=1, config=_DLQ_CONFIG, consumed=False)
        for spec in TOPICS
        if spec.consumed
    ]
    return specs
