"""Keeping existing topics' configuration to the registry: the comparison, and on a real Kafka."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ragstream_common.admin import ensure_topics, stale_topics, topic_overrides
from ragstream_common.topics import TopicSpec

BOOTSTRAP = "127.0.0.1:9092"
_TOPIC_SET, _DEFAULT = 1, 5


@dataclass
class _Described:
    """The shape of aiokafka's DescribeConfigs response: the version and its resources."""

    resources: list[tuple[Any, ...]]
    API_VERSION: int = 2


def _entry(name: str, value: str, source: int) -> tuple[Any, ...]:
    return (name, value, False, source, False, [])


class TestTopicOverrides:
    def test_only_the_topics_own_settings_count(self) -> None:
        described = _Described(
            [
                (
                    0,
                    "",
                    2,
                    "status",
                    [
                        _entry("cleanup.policy", "compact", _TOPIC_SET),
                        _entry("retention.ms", "604800000", _DEFAULT),
                    ],
                ),
                (0, "", 2, "queries", [_entry("retention.ms", "604800000", _DEFAULT)]),
            ]
        )
        assert topic_overrides([described]) == {
            "status": {"cleanup.policy": "compact"},
            "queries": {},
        }

    def test_an_error_names_the_topic(self) -> None:
        described = _Described([(29, "not authorised", 2, "secret", [])])
        with pytest.raises(RuntimeError, match="secret: not authorised"):
            topic_overrides([described])

    def test_a_topic_the_broker_does_not_know_yet_is_left_out(self) -> None:
        """Just created (or just deleted): nothing to compare, so nothing to reconfigure."""
        assert topic_overrides([_Described([(3, "", 2, "new", [])])]) == {}

    def test_version_0_cannot_tell_defaults_apart(self) -> None:
        with pytest.raises(RuntimeError, match="v0"):
            topic_overrides([_Described([], API_VERSION=0)])


class TestStaleTopics:
    spec = TopicSpec("status", partitions=3, config={"cleanup.policy": "compact", "a": "1"})

    def test_same_settings_are_left_alone(self) -> None:
        assert stale_topics([self.spec], {"status": {"a": "1", "cleanup.policy": "compact"}}) == []

    @pytest.mark.parametrize(
        "overrides",
        [
            {"cleanup.policy": "compact", "a": "2"},  # another value
            {"cleanup.policy": "compact"},  # a setting missing
            {"cleanup.policy": "compact", "a": "1", "b": "1"},  # one the spec does not name
        ],
    )
    def test_any_difference_makes_the_topic_stale(self, overrides: dict[str, str]) -> None:
        assert stale_topics([self.spec], {"status": overrides}) == [self.spec]

    def test_a_topic_not_described_is_left_alone(self) -> None:
        assert stale_topics([self.spec], {}) == []


@pytest.mark.stack
class TestOnKafka:
    async def _overrides(self, topic: str) -> dict[str, str]:
        """The topic's own settings, once the broker knows the topic (creating it returns first)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            async with asyncio.timeout(10):
                while True:
                    described = await admin.describe_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, topic)]
                    )
                    overrides = topic_overrides(described)
                    if topic in overrides:
                        return overrides[topic]
                    await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def test_an_existing_topic_takes_its_specs_configuration(self) -> None:
        """A topic created by an earlier release ends up with exactly today's settings."""
        topic = f"admin-test-{uuid.uuid4().hex}"
        old = {"retention.ms": "1000000", "max.message.bytes": "2000000"}
        new = {"retention.ms": "2000000", "segment.ms": "3600000"}
        assert await ensure_topics(BOOTSTRAP, [TopicSpec(topic, 1, old)]) == [topic]
        assert await self._overrides(topic) == old

        assert await ensure_topics(BOOTSTRAP, [TopicSpec(topic, 1, new)]) == []

        assert await self._overrides(topic) == new
