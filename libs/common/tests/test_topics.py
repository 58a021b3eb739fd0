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

    def test_names_are_unique(self) -> None:
        """No topic is declared twice."""
        names = [spec.name for spec in all_topic_specs()]
        assert len(names) == len(set(names))
