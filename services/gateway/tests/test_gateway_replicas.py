"""Two gateway replicas on the real Kafka: every answer reaches the replica holding its request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from ragstream_common.admin import ensure_topics
from ragstream_common.events import AnswerCompleted, QueryRequested
from ragstream_common.messaging import consumer_options, create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import ANSWERS, QUERIES
from ragstream_gateway.adapters.kafka_positions import fix_positions
from ragstream_gateway.app import create_app
from ragstream_gateway.settings import GatewaySettings

pytestmark = pytest.mark.stack

KAFKA = "127.0.0.1:9092"
PORTS = (8011, 8012)
KAFKA_WAIT_S = 60.0
TEST_TENANT = "gateway-stack-test"


async def _kafka_answers(bootstrap: str) -> bool:
    # Ready means a metadata request answers, not merely that the port is open.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception:
        return False
    finally:
        await admin.close()
    return True


@pytest.fixture(scope="module")
async def kafka() -> str:
    """The real Kafka with the registry's topics; the run fails if it does not come up in time."""
    deadline = time.monotonic() + KAFKA_WAIT_S
    while not await _kafka_answers(KAFKA):
        if time.monotonic() > deadline:
            pytest.fail(f"Kafka did not answer at {KAFKA} within {KAFKA_WAIT_S:g}s")
        await asyncio.sleep(1.0)
    await ensure_topics(KAFKA)
    return KAFKA


@asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop until the block ends."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces the startup failure
            raise RuntimeError(f"gateway on port {port} exited during startup")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def responder(bootstrap: str, seen: dict[str, str]) -> AsyncIterator[None]:
    """A stand-in for the pipeline: one consumer group that answers every query at once."""
    settings = ServiceSettings(service_name="gateway-test-responder", kafka_bootstrap=bootstrap)
    broker = create_broker(settings, ServiceMetrics(settings.service_name))
    options = consumer_options(settings, group_id=f"gateway-test-responder-{uuid.uuid4().hex}")
    # Only queries sent from now on matter; the position is pinned below before any is sent.
    options["auto_offset_reset"] = "latest"
    subscriber = broker.subscriber(QUERIES, **options)

    @subscriber
    async def answer(query: QueryRequested) -> None:
        seen[query.text] = query.query_id
        reply = AnswerCompleted(
            query_id=query.query_id,
            tenant=query.tenant,
            reply_to=query.reply_to,
            answer=f"answer to {query.text} for {query.reply_to}",
            citations=[],
            model="stack-responder",
        )
        await publish_event(broker, reply, topic=ANSWERS, key=query.reply_to)

    await broker.start()
    try:
        await fix_positions(subscriber.consumer, QUERIES, max_wait_s=30.0)
        yield
    finally:
        await broker.stop()


class TestReplicas:
    async def test_each_answer_reaches_the_replica_that_asked(self, kafka: str) -> None:
        """Ten queries alternating between two replicas each get their own answer back."""
        instance_ids = [f"gateway-stack-{name}-{uuid.uuid4().hex[:6]}" for name in "ab"]
        apps = [
            create_app(
                GatewaySettings(
                    kafka_bootstrap=kafka,
                    instance_id=instance_id,
                    http_port=port,
                    query_timeout_s=20.0,
                )
            )
            for instance_id, port in zip(instance_ids, PORTS, strict=True)
        ]
        seen: dict[str, str] = {}
        async with (
            responder(kafka, seen),
            serving(apps[0], PORTS[0]) as url_a,
            serving(apps[1], PORTS[1]) as url_b,
            httpx.AsyncClient(timeout=30.0) as client,
        ):
            urls = [url_a, url_b]
            for url in urls:
                assert (await client.get(f"{url}/healthz")).status_code == 200

            async def ask(i: int) -> tuple[int, httpx.Response]:
                url = urls[i % 2]
                return i, await client.post(f"{url}/v1/query", json={"query": f"question-{i}"})

            results = await asyncio.gather(*(ask(i) for i in range(10)))

            for i, response in results:
                assert response.status_code == 200, response.text
                body = response.json()
                replica = instance_ids[i % 2]
                # The running platform answers these queries too, and may be first: either
                # answer proves the routing, and the stand-in's names the replica it was for.
                if body["model"] == "stack-responder":
                    assert body["answer"] == f"answer to question-{i} for {replica}"
                    assert body["query_id"] == seen[f"question-{i}"]
                assert body["timings"]["gateway_total_ms"] > 0
            assert len({response.json()["query_id"] for _, response in results}) == 10

            for app in apps:
                gateway = app.state.gateway
                assert len(gateway.replies) == 0
                resolved = gateway.metrics.answers_seen.labels("gateway", "resolved")
                assert resolved._value.get() == 5

    async def test_status_is_visible_on_every_replica(self, kafka: str) -> None:
        """A document posted to one replica shows up in the other's status view via Kafka."""
        apps = [
            create_app(GatewaySettings(kafka_bootstrap=kafka, http_port=port)) for port in PORTS
        ]
        async with (
            serving(apps[0], PORTS[0]) as url_a,
            serving(apps[1], PORTS[1]) as url_b,
            httpx.AsyncClient(timeout=10.0) as client,
        ):
            doc_id = f"stack-doc-{uuid.uuid4().hex}"
            # A tenant of its own, and a delete at the end, keep the shared index clean.
            document = {"doc_id": doc_id, "content": "status across", "tenant": TEST_TENANT}
            posted = await client.post(f"{url_a}/v1/documents", json=document)
            assert posted.status_code == 202
            deadline = time.monotonic() + 10.0
            while True:
                response = await client.get(
                    f"{url_b}/v1/documents/{doc_id}", params={"tenant": TEST_TENANT}
                )
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert response.status_code == 200, response.text
            assert response.json()["stage"] in {"received", "chunked", "embedded", "indexed"}
            deleted = await client.delete(
                f"{url_b}/v1/documents/{doc_id}", params={"tenant": TEST_TENANT}
            )
            assert deleted.status_code == 202
