"""Creating the registry's topics and keeping their configuration, with Kafka's admin API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from ragstream_common.logging import get_logger
from ragstream_common.topics import TopicSpec, all_topic_specs

__all__ = ["ensure_topics", "stale_topics", "topic_overrides"]

# DescribeConfigs (v1 and later) names where a value comes from; 1 is set on the topic itself.
_DYNAMIC_TOPIC_CONFIG = 1
_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION

_log = get_logger(__name__)


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create every topic in ``specs`` (default: the whole registry) that does not exist yet, and
    give those that exist the configuration of their spec.

    A topic created by an earlier release keeps the configuration it was created with unless
    something changes it; on Kubernetes, Strimzi's topic operator does, and here this does.

    Args:
        bootstrap: The Kafka bootstrap servers.
        specs: The topics to ensure.

    Returns:
        The names of the topics this call created.

    Raises:
        RuntimeError: Kafka refused a topic's configuration.
    """
    wanted = list(specs if specs is not None else all_topic_specs())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="ragstream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
        present = [spec for spec in wanted if spec.name in existing]
        if present:
            await _configure(admin, present)
        if not missing:
            return []
        new_topics = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=1,
                topic_configs=dict(spec.config),
            )
            for spec in missing
        ]
        # Another process may create them between our listing and our request: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new_topics)
        created = [spec.name for spec in missing]
        _log.info("topics_created", topics=created)
        return created
    finally:
        await admin.close()


async def _configure(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    """Give each topic of ``specs`` exactly its spec's configuration, where it has another."""
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name) for spec in specs]
    )
    stale = stale_topics(specs, topic_overrides(described))
    if not stale:
        return
    # AlterConfigs replaces a topic's whole set of overrides: what the spec does not name goes
    # back to the broker's default, so the topic ends up as the registry describes it.
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, dict(spec.config)) for spec in stale]
    )
    refused = [
        f"{name}: {message or f'error {code}'}"
        for response in responses
        for code, message, _, name in response.resources
        if code
    ]
    if refused:
        raise RuntimeError(f"Kafka refused the topic configuration ({'; '.join(refused)})")
    _log.info("topic_configs_updated", topics=[spec.name for spec in stale])


def topic_overrides(responses: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Return each described topic's own settings (not the broker's defaults), by topic name.

    A topic the broker does not know (yet) is left out.

    Args:
        responses: DescribeConfigs responses (version 1 or later), as aiokafka returns them.

    Raises:
        RuntimeError: A response is version 0, which does not say where a value comes from, or
            names an error.
    """
    overrides: dict[str, dict[str, str]] = {}
    for response in responses:
        if response.API_VERSION < 1:
            raise RuntimeError("DescribeConfigs v0 does not say which settings are the topic's")
        for code, message, _, name, entries in response.resources:
            if code == _UNKNOWN_TOPIC:
                # Created a moment ago and not yet known to the broker answering, or deleted:
                # either way not one to reconfigure now.
                continue
            if code:
                raise RuntimeError(f"cannot describe topic {name}: {message or f'error {code}'}")
            overrides[name] = {
                entry[0]: entry[1] for entry in entries if entry[3] == _DYNAMIC_TOPIC_CONFIG
            }
    return overrides


def stale_topics(
    specs: Iterable[TopicSpec], overrides: Mapping[str, Mapping[str, str]]
) -> list[TopicSpec]:
    """Return the specs whose topic's own settings differ from the spec's configuration.

    Args:
        specs: The topics as they should be.
        overrides: Each topic's own settings (``topic_overrides``); a topic missing here is left
            alone.
    """
    return [
        spec
        for spec in specs
        if spec.name in overrides and dict(overrides[spec.name]) != dict(spec.config)
    ]
