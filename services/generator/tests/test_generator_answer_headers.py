"""Every published answer names, in its headers, the query, tenant, model and prompt version."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker

from ragstream_common.events import (
    AnswerCompleted,
    ContextRetrieved,
    QueryRequested,
    RetrievedChunk,
)
from ragstream_common.messaging import KafkaMessage, create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.adapters.llm import build_answer_model
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.handlers import build_router
from ragstream_generator.settings import GeneratorSettings

pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")


async def test_answer_headers_name_who_answered() -> None:
    """The gateway reads these headers from every answer, its own or not, to accept feedback."""
    settings = GeneratorSettings()
    metrics = ServiceMetrics("generator")
    broker = create_broker(settings, metrics)
    deps = Dependencies(
        settings=settings, metrics=metrics, broker=broker, llm_port=build_answer_model(settings)
    )
    broker.include_router(build_router(deps))
    seen: list[tuple[dict[str, str], AnswerCompleted]] = []

    @broker.subscriber(ANSWERS)
    async def collect(answer: AnswerCompleted, message: KafkaMessage) -> None:
        seen.append((dict(message.headers), answer))

    query = QueryRequested(text="Which port?", reply_to="gw-1", tenant="acme")
    chunk = RetrievedChunk(
        chunk_id="c1",
        doc_id="d1",
        title="Ops",
        text="The gateway listens on port 8000.",
        position=0,
        score=0.9,
    )
    context = ContextRetrieved(query=query, chunks=[chunk])
    async with TestKafkaBroker(broker):
        await publish_event(broker, context, topic=CONTEXTS, key=query.query_id)

    [(headers, answer)] = seen
    assert answer.model == LOCAL_MODEL
    assert headers["query-id"] == query.query_id
    assert headers["tenant"] == "acme"
    assert headers["model"] == LOCAL_MODEL
    assert headers["prompt-version"] == answer.prompt_version == settings.prompt_version
