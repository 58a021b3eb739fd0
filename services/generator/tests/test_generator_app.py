"""Tests for the generator's wiring: the lifespan builds the router, HTTP serves health and metrics."""

from __future__ import annotations

import httpx
import pytest
from faststream import TestApp
from faststream.kafka import KafkaBroker, TestKafkaBroker

from ragstream_common.events import (
    AnswerCompleted,
    ContextRetrieved,
    QueryRequested,
    RetrievedChunk,
)
from ragstream_common.messaging import publish_event
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.app import create_app
from ragstream_generator.settings import GeneratorSettings

# LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

CONTEXT = ContextRetrieved(
    query=QueryRequested(text="Which port does the gateway listen on?", reply_to="gw-1"),
    chunks=[
        RetrievedChunk(
            chunk_id="c1",
            doc_id="ops",
            title="Operations",
            text="The gateway listens on port 8000. The generator serves metrics on 8104.",
            position=0,
            score=0.8,
        )
    ],
)


class TestCreateApp:
    async def test_lifespan_builds_the_router_from_the_packaged_config(self) -> None:
        """Started with default settings, the app answers through the local model it built."""
        app = create_app(GeneratorSettings())
        assert isinstance(app.broker, KafkaBroker)
        answers: list[AnswerCompleted] = []

        @app.broker.subscriber(ANSWERS)
        async def collect(event: AnswerCompleted) -> None:
            answers.append(event)

        async with TestKafkaBroker(app.broker) as broker, TestApp(app):
            await publish_event(broker, CONTEXT, topic=CONTEXTS, key=CONTEXT.query.query_id)

        assert [(a.model, a.answer) for a in answers] == [
            (LOCAL_MODEL, "The gateway listens on port 8000. [1]")
        ]

    async def test_unreachable_redis_with_every_cache_and_a_budget_still_answers(self) -> None:
        """Answer caches, LiteLLM's call cache and the spend store all down: the answer still comes."""
        # Nothing listens on port 1: every Redis call is refused at once.
        settings = GeneratorSettings(
            redis_url="redis://127.0.0.1:1/0", tenant_budget_usd_per_day=1.0, warm_up=False
        )
        app = create_app(settings)
        assert isinstance(app.broker, KafkaBroker)
        answers: list[AnswerCompleted] = []

        @app.broker.subscriber(ANSWERS)
        async def collect(event: AnswerCompleted) -> None:
            answers.append(event)

        async with TestKafkaBroker(app.broker) as broker, TestApp(app):
            await publish_event(broker, CONTEXT, topic=CONTEXTS, key=CONTEXT.query.query_id)

        assert [(a.model, a.error) for a in answers] == [(LOCAL_MODEL, None)]

    async def test_serves_health_and_metrics(self) -> None:
        """/healthz answers while the broker is reachable and /metrics exposes our instruments."""
        app = create_app(GeneratorSettings())
        assert isinstance(app.broker, KafkaBroker)

        async with TestKafkaBroker(app.broker):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://generator"
            ) as client:
                health = await client.get("/healthz")
                metrics = await client.get("/metrics")

        assert health.status_code == 204
        assert "ragstream_stage_duration_seconds" in metrics.text

    def test_creating_the_app_does_not_import_litellm(self) -> None:
        """Building the app object does no heavy work: LiteLLM is imported by the lifespan only."""
        import subprocess
        import sys

        code = (
            "import sys; from ragstream_generator.app import create_app; create_app(); "
            "print('litellm' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )

        assert result.stdout.strip() == "False"
