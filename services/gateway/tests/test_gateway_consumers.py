"""The gateway's Kafka consumers as wired by ``build_consumers``, polled without a broker."""

from __future__ import annotations

from faststream.kafka.subscriber.usecase import BatchSubscriber

from ragstream_common.messaging import create_broker
from ragstream_gateway.api import Gateway
from ragstream_gateway.handlers import build_consumers
from ragstream_gateway.instruments import GatewayMetrics
from ragstream_gateway.settings import GatewaySettings


class _ScriptedConsumer:
    """Answers ``getmany`` from a script of polls, recording each poll's timeout."""

    def __init__(self, *polls: list[str]) -> None:
        self.polls = list(polls)
        self.timeouts: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.timeouts.append(timeout_ms)
        records = self.polls.pop(0) if self.polls else []
        return {"document-status-0": records[:max_records]} if records else {}


def _status_subscriber(settings: GatewaySettings) -> BatchSubscriber:
    metrics = GatewayMetrics(settings.service_name)
    gateway = Gateway(
        settings=settings, broker=create_broker(settings, metrics.service), metrics=metrics
    )
    consumers = build_consumers(
        settings, gateway.broker, gateway.replies, gateway.statuses, metrics, gateway.answers
    )
    return consumers.statuses


class TestStatusBatches:
    async def test_a_batch_waits_the_configured_time_for_more_statuses(self) -> None:
        """Statuses that arrive within ``status_batch_max_wait_ms`` are folded in one batch."""
        subscriber = _status_subscriber(GatewaySettings(status_batch_max_wait_ms=750))
        consumer = _ScriptedConsumer(["indexed a"], ["chunked b"], [])
        assert await subscriber.get_msg(consumer) == ("indexed a", "chunked b")
        assert all(0 < timeout <= 750 for timeout in consumer.timeouts[1:])

    async def test_without_a_wait_each_poll_is_a_batch(self) -> None:
        """At 0 the view takes each poll's statuses at once, as before the setting existed."""
        subscriber = _status_subscriber(GatewaySettings(status_batch_max_wait_ms=0))
        consumer = _ScriptedConsumer(["indexed a"], ["chunked b"])
        assert await subscriber.get_msg(consumer) == ("indexed a",)
        assert len(consumer.timeouts) == 1
