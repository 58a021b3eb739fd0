"""The gateway's Kafka consumers: answers to the queries it holds, and document statuses.

Both read without a consumer group, because each replica needs every partition: any partition of
``answers`` may carry an answer it waits for, and the status view must hold every document. The
answers go through a FastStream subscriber; the statuses through ``adapters.status_feed``, which
calls ``fold_status`` for each record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter, Topic
from pydantic import ValidationError

from ragstream_common.events import DEFAULT_TENANT, AnswerCompleted, AnswerDelta, DocumentStatus
from ragstream_common.logging import get_logger
from ragstream_common.messaging import (
    KafkaMessage,
    batch_records,
    batch_subscriber,
    dead_letter,
    record_header,
    record_message,
)
from ragstream_common.topics import ANSWERS
from ragstream_gateway.domain import PendingReplies, StatusBook
from ragstream_gateway.feedback import AnsweredBy, AnswerLedger
from ragstream_gateway.instruments import GatewayMetrics
from ragstream_gateway.settings import GatewaySettings

__all__ = ["GatewayConsumers", "build_consumers", "fold_status", "take_answer"]

_log = get_logger(__name__)

# Answers (and streamed deltas) taken per handler call.
_ANSWER_BATCH = 500


@dataclass
class GatewayConsumers:
    """The router to include in the broker, and its answers subscriber (for its consumer)."""

    router: KafkaRouter
    answers: Any


def build_consumers(
    settings: GatewaySettings,
    broker: KafkaBroker,
    replies: PendingReplies,
    metrics: GatewayMetrics,
    ledger: AnswerLedger,
) -> GatewayConsumers:
    """Build the subscriber that feeds ``replies`` from Kafka.

    Args:
        settings: The gateway's settings (its reply route, fetch waits).
        broker: Publishes the dead letters of unreadable answers.
        replies: The queries this replica waits on.
        metrics: Counts what the consumers see.
        ledger: Who wrote each answer, for feedback.
    """
    router = KafkaRouter()
    reply_route = settings.instance_id.encode()

    # Topics are provisioned from the registry (partitions, retention, compaction); declare=False
    # stops FastStream from creating a one-partition topic with default settings instead.
    answers = batch_subscriber(
        router,
        Topic(ANSWERS, declare=False),
        # A streamed answer is many deltas; one at a time, FastStream's per-message pipeline
        # (about 1 ms each) queued them behind each other under load.
        max_messages=_ANSWER_BATCH,
        group_id=None,
        # Answers published before this replica started belong to requests it never held, so
        # reading from the end is enough, provided the end is pinned before the first query
        # is accepted: app.py waits for that (adapters.kafka_positions.fix_positions).
        auto_offset_reset="latest",
        # No group, no commits: a replica that restarts starts over at the end anyway.
        ack_policy=AckPolicy.ACK_FIRST,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        title="answers (reply route of this replica)",
    )

    @answers
    async def on_answers(message: KafkaMessage) -> None:
        """Resolve the pending requests answers (or deltas) belong to; ignore everyone else's."""
        for record in batch_records(message):
            try:
                take_answer(record, reply_route, settings.instance_id, replies, metrics, ledger)
            except ValidationError as error:
                # Only the replica the answer was keyed to gets this far: one dead letter.
                await dead_letter(
                    broker,
                    record_message(record),
                    error,
                    service=metrics.name,
                    metrics=metrics.service,
                )

    return GatewayConsumers(router=router, answers=answers)


def take_answer(
    record: ConsumerRecord[bytes, bytes],
    reply_route: bytes,
    instance_id: str,
    replies: PendingReplies,
    metrics: GatewayMetrics,
    ledger: AnswerLedger,
) -> None:
    """Hand one ``answers`` record to the request waiting for it, if this replica holds it.

    Args:
        record: An answer or a delta.
        reply_route: This replica's key on the topic.
        instance_id: This replica's id, which answers name in ``reply_to``.
        replies: The requests this replica waits on.
        metrics: Counts what became of the record.
        ledger: Notes who wrote every answer, this replica's or not, for feedback.

    Raises:
        ValidationError: The record is neither an answer nor a delta.
    """
    note_author(record, ledger)
    # Answers are keyed by reply route: another replica's answer is dropped on its key, before
    # the body is parsed.
    if record.key and record.key != reply_route:
        metrics.answer_seen("foreign")
        return
    # The answers topic carries a streamed query's deltas before its answer; the producer names
    # each message's type in a header (ragstream_common.messaging.publish_event).
    if record_header(record, "event-type") == AnswerDelta.__name__:
        delta = AnswerDelta.model_validate_json(record.value or b"")
        if delta.reply_to != instance_id:
            metrics.answer_seen("foreign")
        elif replies.deliver(delta):
            metrics.answer_seen("delta")
        else:
            metrics.answer_seen("late")
        return
    answer = AnswerCompleted.model_validate_json(record.value or b"")
    if answer.reply_to != instance_id:
        metrics.answer_seen("foreign")
        return
    if replies.resolve(answer):
        metrics.answer_seen("resolved")
    else:
        metrics.answer_seen("late")
        _log.info("answer_without_pending_request", query_id=answer.query_id)


def note_author(record: ConsumerRecord[bytes, bytes], ledger: AnswerLedger) -> None:
    """Note which model and prompt wrote an answer, from its headers (the generator sets them)."""
    if record_header(record, "event-type") != AnswerCompleted.__name__:
        return
    query_id, model = record_header(record, "query-id"), record_header(record, "model")
    if not query_id or not model:
        return
    ledger.remember(
        query_id,
        AnsweredBy(
            tenant=record_header(record, "tenant") or DEFAULT_TENANT,
            model=model,
            prompt_version=record_header(record, "prompt-version") or None,
        ),
    )


def fold_status(value: bytes | None, statuses: StatusBook, metrics: GatewayMetrics) -> None:
    """Fold one ``document-status`` record into the view, counting what became of it.

    Args:
        value: The record's value; empty for a tombstone.
        statuses: The view.
        metrics: Counts applied, stale, rejected and tombstone records.
    """
    if not value:
        # A tombstone (compaction's delete marker) carries no status to show.
        metrics.status_event("tombstone")
        return
    try:
        event = DocumentStatus.model_validate_json(value)
    except ValidationError as error:
        # Every replica reads this topic; dead-lettering here would write one copy per
        # replica, so an unreadable status is counted and logged instead.
        metrics.status_event("rejected")
        _log.warning("status_event_rejected", error=str(error)[:300])
        return
    metrics.status_event("applied" if statuses.apply(event) else "stale")
