"""Creating the registry's topics and reading consumer lag, with Kafka's admin API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ragstream_common.logging import get_logger
from ragstream_common.topics import TopicSpec, all_topic_specs

__all__ = ["ensure_topics"]

_log = get_logger(__name__)


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create every topic in ``specs`` (default: the whole registry) that does not exist yet.

    Args:
        bootstrap: The Kafka bootstrap servers.
        specs: The topics to ensure.

    Returns:
        The names of the topics this call created.
    """
    wanted = list(specs if specs is not None else all_topic_specs())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="ragstream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
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
