"""The generator against the real Kafka: a context published to `contexts` comes out answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream import TestApp

from ragstream_common.admin import ensure_topics
from ragstream_common.events import ContextRetrieved, QueryRequested, RetrievedChunk
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.app import create_app
from ragstream_generator.settings import GeneratorSettings

pytestmark = [
    pytest.mark.stack,
    # LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
    pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning"),
]

BOOTSTRAP = "127.0.0.1:9092"
# Joining a consumer group that is already running takes a rebalance of a few heartbeats.
WAIT_SECONDS = 60.0


async def _tail(producer: AIOKafkaProducer, topic: str) -> AIOKafkaConsumer:
    """Start a group-less consumer at the current end of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in await producer.partitions_for(topic)])
    await consumer.seek_to_end()
    for partition in consumer.assignment():
        await consumer.position(partition)
    return consumer


async def _answer_for(consumer: AIOKafkaConsumer, reply_to: str) -> dict[str, Any] | None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        if record.key == reply_to.encode():
                            answer: dict[str, Any] = json.loads(record.value)
                            return answer
    return None


class TestGeneratorOnKafka:
    async def test_published_context_is_answered_on_answers(self) -> None:
        """A context on the real `contexts` topic comes back on `answers`, keyed to reply_to."""
        await ensure_topics(BOOTSTRAP)
        reply_to = f"generator-stack-{uuid.uuid4().hex}"
        context = ContextRetrieved(
            query=QueryRequested(text="Which port does the gateway listen on?", reply_to=reply_to),
            chunks=[
                RetrievedChunk(
                    chunk_id="ops#0",
                    doc_id="ops",
                    title="Operations",
                    text="The gateway listens on port 8000. Metrics are scraped every 15 s.",
                    position=0,
                    score=0.8,
                )
            ],
        )
        app = create_app(GeneratorSettings(kafka_bootstrap=BOOTSTRAP))
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        consumer = await _tail(producer, ANSWERS)
        try:
            async with TestApp(app):
                await producer.send_and_wait(
                    CONTEXTS,
                    context.model_dump_json().encode(),
                    key=context.query.query_id.encode(),
                )
                answer = await _answer_for(consumer, reply_to)
        finally:
            await consumer.stop()
            await producer.stop()

        assert answer is not None, "no answer on the answers topic"
        assert answer["query_id"] == context.query.query_id
        assert answer["answer"] == "The gateway listens on port 8000. [1]"
        assert answer["model"] == LOCAL_MODEL
        assert [c["chunk_id"] for c in answer["citations"]] == ["ops#0"]
