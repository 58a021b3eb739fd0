"""Tests for the topic registry."""

from __future__ import annotations

from ragstream_common.topics import DOCUMENTS, TOPICS, all_topic_specs, dlq_name


class TestTopicRegistry:
    def test_every_consumed_topic_has_a_dead_letter_topic(self) -> None:
        """Each consumed topic gets exactly one <topic>.dlq beside it."""
        names = {spec.name for spec in all_topic_specs()}
        for spec in TOPICS:
            assert (dlq_name(spec.name) in names) == spec.consumed

    def test_documents_topic_is_compacted(self) -> None:
        """The documents topic keeps the latest version per key forever: it is the source of truth."""
        documents = next(spec for spec in TOPICS if spec.name == DOCUMENTS)
        assert documents.config["cleanup.policy"] == "compact"
        assert "retention.ms" not in documents.config

    def test_compacted_topics_are_compacted_within_the_hour(self) -> None:
        """Kafka never compacts the active segment; without a bound it rolls after a week."""
        compacted = [
            spec for spec in all_topic_specs() if spec.config.get("cleanup.policy") == "compact"
        ]
        assert compacted
        for spec in compacted:
            assert int(spec.config["max.compaction.lag.ms"]) <= 60 * 60 * 1000, spec.name
            # Consumers a minute behind still read every record.
            assert int(spec.config["min.compaction.lag.ms"]) >= 60 * 1000, spec.name

    def test_names_are_unique(self) -> None:
        """No topic is declared twice."""
        names = [spec.name for spec in all_topic_specs()]
        assert len(names) == len(set(names))
