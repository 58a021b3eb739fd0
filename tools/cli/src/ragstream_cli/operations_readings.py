"""Reads what the operations view of ``ragstream status`` shows: Kafka, Weaviate, the retriever.

Kafka is read with its admin API and one group-less consumer, the way ``kafka-consumer-groups.sh``
does; Weaviate's and the retriever's readings are optional (None when they do not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragstream_cli.operations import (
    DeadLetterRow,
    OperationsSnapshot,
    freshness_quantile,
    index_sizes,
    recent_dead_letters,
    topic_activity,
)
from ragstream_cli.stack.weaviate import weaviate_headers
from ragstream_common.lag import groups_lag
from ragstream_common.topics import TOPICS, dlq_name

__all__ = ["read_operations"]

# Each Kafka request gives up this soon, so a half-dead broker cannot hold `status` up for long.
_REQUEST_TIMEOUT_MS = 3000
_HTTP_TIMEOUT_S = 2.0
# How many of the latest records of each dead-letter topic are read.
_DEAD_LETTERS_PER_TOPIC = 5


async def read_operations(
    bootstrap: str,
    *,
    interval_s: float,
    retriever_url: str,
    weaviate_url: str,
    weaviate_api_key: str | None = None,
) -> OperationsSnapshot:
    """Sample the platform twice, ``interval_s`` apart, and return what the view shows.

    Args:
        bootstrap: The Kafka bootstrap servers.
        interval_s: Seconds between the two end-offset samples that give the rates.
        retriever_url: Where the retriever serves ``/metrics`` (freshness).
        weaviate_url: Weaviate's REST endpoint (index sizes).
        weaviate_api_key: Its API key, if it asks for one.

    Raises:
        KafkaError: Kafka could not be read (the caller reports it; nothing else is shown).
    """
    topics = [spec.name for spec in TOPICS]
    dead_letter_topics = [dlq_name(spec.name) for spec in TOPICS if spec.consumed]
    async with contextlib.AsyncExitStack() as clients:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="ragstream-status",
            request_timeout_ms=_REQUEST_TIMEOUT_MS,
        )
        clients.push_async_callback(admin.close)
        await admin.start()
        # Two group-less consumers: one only asks for offsets; the other is assigned the
        # dead-letter partitions to read them, which would change the metadata the first keeps.
        offsets_reader = await _started_consumer(bootstrap, clients)
        dead_letter_reader = await _started_consumer(bootstrap, clients)
        partitions = await _partitions(admin, topics)
        first = await offsets_reader.end_offsets(partitions)
        started = time.perf_counter()
        beginning = await offsets_reader.beginning_offsets(partitions)
        # The wait between the samples is spent reading everything else.
        _, letters, freshness, sizes = await asyncio.gather(
            asyncio.sleep(interval_s),
            _dead_letters(dead_letter_reader, await _partitions(admin, dead_letter_topics)),
            _freshness(retriever_url),
            _index_sizes(weaviate_url, weaviate_api_key),
        )
        # Commits are read before the end offsets, so that a lag is never negative.
        committed = await _committed_offsets(admin)
        last = await offsets_reader.end_offsets(partitions)
        elapsed = time.perf_counter() - started
    lags = groups_lag(committed, last, beginning)
    return OperationsSnapshot(
        topics=topic_activity(topics, first, last, elapsed, lags),
        freshness_p50_s=freshness,
        index_sizes=sizes,
        dead_letters=letters,
    )


async def _started_consumer(bootstrap: str, clients: contextlib.AsyncExitStack) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="ragstream-status",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
        # Asked for offsets of topics it has no metadata of, a consumer learns one topic per
        # retry and waits this long before each: 100 ms by default, most of a second here.
        retry_backoff_ms=10,
    )
    # Stopped even when the start fails: a consumer never stopped warns when collected.
    clients.push_async_callback(consumer.stop)
    await consumer.start()
    return consumer


async def _partitions(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    return [
        TopicPartition(description["topic"], partition["partition"])
        for description in await admin.describe_topics(list(topics))
        for partition in description["partitions"]
    ]


async def _committed_offsets(
    admin: AIOKafkaAdminClient,
) -> dict[str, dict[TopicPartition, int]]:
    """Return the committed offsets on the registry's topics, by consumer group.

    Groups that committed nothing on them (a test's group on its own topic, say) are left out.
    """
    registry = {spec.name for spec in TOPICS}
    groups = [group for group, _protocol in await admin.list_consumer_groups()]
    answers = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in groups))
    committed = {}
    for group, offsets in zip(groups, answers, strict=True):
        ours = {tp: meta.offset for tp, meta in offsets.items() if tp.topic in registry}
        if ours:
            committed[group] = ours
    return committed


async def _dead_letters(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> list[DeadLetterRow]:
    """Return the latest dead letters of ``partitions``, read from each one's tail."""
    if not partitions:
        return []
    end = await consumer.end_offsets(partitions)
    beginning = await consumer.beginning_offsets(partitions)
    wanted = {tp: end[tp] for tp in partitions if end[tp] > beginning[tp]}
    if not wanted:
        return []
    positions = {tp: max(beginning[tp], end[tp] - _DEAD_LETTERS_PER_TOPIC) for tp in wanted}
    consumer.assign(list(wanted))
    for tp, position in positions.items():
        consumer.seek(tp, position)
    records: list[tuple[str, int, bytes | None]] = []
    deadline = time.perf_counter() + _REQUEST_TIMEOUT_MS / 1000
    while any(positions[tp] < wanted[tp] for tp in wanted) and time.perf_counter() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, batch in batches.items():
            for record in batch:
                records.append((tp.topic, record.timestamp, record.value))
                positions[tp] = record.offset + 1
    return recent_dead_letters(records)


async def _freshness(retriever_url: str) -> float | None:
    try:
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client:
            response = await client.get(f"{retriever_url}/metrics")
            response.raise_for_status()
    except httpx.HTTPError:
        return None
    return freshness_quantile(response.text, 0.5)


async def _index_sizes(weaviate_url: str, api_key: str | None) -> dict[str, int] | None:
    # One request for every collection and tenant; an aggregate per tenant would be one each.
    # Weaviate updates these counts asynchronously: they may trail the last writes briefly.
    headers = weaviate_headers(api_key) if api_key else None
    try:
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S, headers=headers) as client:
            response = await client.get(f"{weaviate_url}/v1/nodes", params={"output": "verbose"})
            response.raise_for_status()
    except httpx.HTTPError:
        return None
    return index_sizes(response.json())
