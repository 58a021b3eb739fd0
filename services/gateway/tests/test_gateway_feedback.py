"""POST /v1/feedback: ratings counted against the model and prompt that wrote the answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from pydantic import ValidationError

from ragstream_common.events import AnswerCompleted, FeedbackGiven, QueryRequested
from ragstream_common.messaging import publish_event
from ragstream_common.topics import ANSWERS, FEEDBACK, QUERIES
from ragstream_gateway.adapters.status_feed import StatusFeed
from ragstream_gateway.app import create_app
from ragstream_gateway.feedback import AnsweredBy, AnswerLedger, FeedbackIn
from ragstream_gateway.settings import GatewaySettings

INSTANCE = "gw-feedback-1"


def _answer(query: QueryRequested, reply_to: str) -> AnswerCompleted:
    return AnswerCompleted(
        query_id=query.query_id,
        tenant=query.tenant,
        reply_to=reply_to,
        answer="Forty-two. [1]",
        citations=[],
        model="openai/gpt-small",
        prompt_version="answer-v1",
    )


def _authors(answer: AnswerCompleted) -> dict[str, str]:
    # What the generator puts in the headers of every answer it publishes.
    return {
        "query-id": answer.query_id,
        "tenant": answer.tenant,
        "model": answer.model,
        "prompt-version": answer.prompt_version or "",
    }


class _Running:
    def __init__(self, reply_to: str | None = None) -> None:
        self.app = create_app(GatewaySettings(instance_id=INSTANCE, query_timeout_s=2))
        self.broker = self.app.state.gateway.broker
        # No Kafka to read statuses from; feedback needs none.
        gateway = self.app.state.gateway
        gateway.status_feed = StatusFeed(gateway.status_feed.fold)
        self.feedback: list[FeedbackGiven] = []
        self.queries: list[QueryRequested] = []
        reply_route = reply_to or INSTANCE

        @self.broker.subscriber(QUERIES, group_id="fake-pipeline")
        async def answer(query: QueryRequested) -> None:
            self.queries.append(query)
            reply = _answer(query, reply_route)
            await publish_event(
                self.broker, reply, topic=ANSWERS, key=reply_route, headers=_authors(reply)
            )

        @self.broker.subscriber(FEEDBACK, group_id="feedback-reader")
        async def keep(event: FeedbackGiven) -> None:
            self.feedback.append(event)

    def rating_sample(self, suffix: str) -> float | None:
        registry = self.app.state.gateway.metrics.service.registry
        labels = {"service": "gateway", "model": "openai/gpt-small", "prompt_version": "answer-v1"}
        return registry.get_sample_value(f"ragstream_feedback_rating_{suffix}", labels)


async def _client(running: _Running) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(running.app), base_url="http://gw")


class TestFeedbackApi:
    async def test_rating_is_recorded_against_the_answers_model_and_prompt(self) -> None:
        """Feedback on an answer is published with its tenant, model and prompt, and counted."""
        running = _Running()
        async with (
            TestKafkaBroker(running.broker, connect_only=True),
            running.app.router.lifespan_context(running.app),
            await _client(running) as client,
        ):
            asked = await client.post("/v1/query", json={"query": "q?", "tenant": "acme"})
            assert asked.status_code == 200, asked.text
            query_id = asked.json()["query_id"]
            given = await client.post(
                "/v1/feedback", json={"query_id": query_id, "rating": 2, "comment": " vague "}
            )
            assert given.status_code == 202, given.text
            assert given.json() == {
                "query_id": query_id,
                "model": "openai/gpt-small",
                "prompt_version": "answer-v1",
            }
        [event] = running.feedback
        assert (event.query_id, event.tenant, event.rating, event.comment) == (
            query_id,
            "acme",
            2,
            "vague",
        )
        assert (event.model, event.prompt_version) == ("openai/gpt-small", "answer-v1")
        assert running.rating_sample("count") == 1
        assert running.rating_sample("sum") == 2

    async def test_feedback_on_an_answer_another_replica_held_is_accepted(self) -> None:
        """Answers keyed to another replica are still noted: feedback may land on any replica."""
        running = _Running(reply_to="gw-other")
        async with (
            TestKafkaBroker(running.broker, connect_only=True),
            running.app.router.lifespan_context(running.app),
            await _client(running) as client,
        ):
            asked = await client.post("/v1/query", json={"query": "q?"})
            assert asked.status_code == 504  # the answer went to the other replica
            [query] = running.queries
            given = await client.post(
                "/v1/feedback", json={"query_id": query.query_id, "rating": 5}
            )
            assert given.status_code == 202, given.text
        assert [event.rating for event in running.feedback] == [5]

    @pytest.mark.parametrize(
        ("payload", "status_code", "fragment"),
        [
            ({"query_id": "never-asked", "rating": 4}, 404, "no answer to query"),
            ({"query_id": "q", "rating": 0}, 422, "rating"),
            ({"query_id": "q", "rating": 6}, 422, "rating"),
            ({"rating": 3}, 422, "query_id"),
            ({"query_id": "q", "rating": 3, "stars": 3}, 422, "stars"),
            ({"query_id": "q x", "rating": 3}, 422, "query_id"),
        ],
    )
    async def test_bad_feedback_is_a_4xx_with_a_message(
        self, payload: dict[str, Any], status_code: int, fragment: str
    ) -> None:
        """Unknown query ids, ratings outside 1..5 and unknown fields are refused, clearly."""
        running = _Running()
        async with (
            TestKafkaBroker(running.broker, connect_only=True),
            running.app.router.lifespan_context(running.app),
            await _client(running) as client,
        ):
            response = await client.post("/v1/feedback", json=payload)
        assert response.status_code == status_code
        assert fragment in response.text
        assert running.feedback == []


class TestAnswerLedger:
    def test_oldest_answers_are_forgotten_beyond_the_bound(self) -> None:
        """The ledger keeps the newest max_entries answers."""
        ledger = AnswerLedger(max_entries=2)
        for query_id in ("a", "b", "c"):
            ledger.remember(query_id, AnsweredBy("t", "m", None))
        assert (ledger.lookup("a"), len(ledger)) == (None, 2)
        assert ledger.lookup("c") == AnsweredBy("t", "m", None)

    def test_answers_too_old_for_feedback_are_unknown(self) -> None:
        """Past max_age_s an answer no longer takes feedback."""
        now = [0.0]
        ledger = AnswerLedger(max_age_s=60, clock=lambda: now[0])
        ledger.remember("a", AnsweredBy("t", "m", "p1"))
        now[0] = 59.0
        assert ledger.lookup("a") is not None
        now[0] = 61.0
        assert ledger.lookup("a") is None

    def test_blank_comment_is_no_comment(self) -> None:
        """A comment of spaces is stored as none, and an overlong one is refused."""
        assert FeedbackIn(query_id="q", rating=3, comment="   ").comment is None
        with pytest.raises(ValidationError):
            FeedbackIn(query_id="q", rating=3, comment="x" * 2001)
