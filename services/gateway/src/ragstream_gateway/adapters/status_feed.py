"""The status view's reader: every ``document-status`` record, folded the moment it arrives.

A plain aiokafka consumer, where the gateway's other consumers are FastStream subscribers. The
view needs nothing of FastStream's per-batch pipeline: no acknowledgements (no group), no dead
letters (every replica reads every record, so each would write its own copy), no trace per
record. And the pipeline is what it cost: about 0.8 ms of CPU per batch, and during a bulk ingest
statuses arrive one or two per fetch, so a 120-document burst was 190-250 batches, 0.55-0.85
CPU-s of the gateway's. Making the batches fuller by waiting would leave the view behind Kafka,
and a script that runs ``ragstream ingest --wait`` and then asks the gateway must see what the
command saw. Here a poll costs microseconds, so every record is folded as soon as it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from ragstream_common.logging import get_logger
from ragstream_common.messaging import IDLE_POLL_MS
from ragstream_common.topics import DOCUMENT_STATUS
from ragstream_gateway.settings import GatewaySettings

__all__ = ["KafkaStatusFeed", "StatusFeed", "follow"]

_log = get_logger(__name__)

# Records taken from the consumer per poll: at startup the whole compacted topic is read.
_POLL_RECORDS = 500
# After a poll fails (Kafka gone, say), how long before the next: aiokafka reconnects meanwhile.
_RETRY_AFTER_S = 1.0

Fold = Callable[[bytes | None], None]


class StatusFeed:
    """What the app needs of a status reader: start, stop, the consumer for the catch-up, and
    whether it still runs. This base reads nothing (tests under the in-memory broker use it).

    Args:
        fold: Applies one record's value (empty for a tombstone) to the view.
    """

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Begin folding statuses."""

    async def stop(self) -> None:
        """Stop folding statuses."""

    @property
    def stopped(self) -> bool:
        """True once the reader has ended on its own: the view no longer follows Kafka."""
        return False


async def follow(consumer: AIOKafkaConsumer, fold: Fold) -> None:
    """Fold every record ``consumer`` reads, as it reads it; never returns.

    A poll that fails is logged and tried again, so that the view keeps up once Kafka is back
    instead of freezing for the rest of the process's life. A fold that fails is a bug: it ends
    the loop, and the replica's health check says so (a restart reads the topic afresh).

    Args:
        consumer: A started consumer of the status topic.
        fold: Applies one record's value (empty for a tombstone) to the view.
    """
    while True:
        try:
            polled = await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=_POLL_RECORDS)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _log.warning("status_poll_failed", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(_RETRY_AFTER_S)
            continue
        for records in polled.values():
            for record in records:
                fold(record.value)


class KafkaStatusFeed(StatusFeed):
    """Reads the whole status topic without a consumer group and folds it into the view.

    Args:
        settings: Where Kafka is, and the fetch wait.
        fold: Applies one record's value to the view (``handlers.fold_status``).
    """

    def __init__(self, settings: GatewaySettings, fold: Fold) -> None:
        super().__init__(fold)
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the consumer at the topic's beginning and the task that folds its records."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id=f"{self._settings.service_name}-status-view",
            # Every replica needs every partition: no group, so a subscription is assigned all.
            group_id=None,
            enable_auto_commit=False,
            # The topic is compacted: reading it whole rebuilds the latest status of every
            # document.
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )
        consumer.subscribe([DOCUMENT_STATUS])
        # Kept before it starts, so that stop() closes what a failed start left open.
        self.consumer = consumer
        await consumer.start()
        self._task = asyncio.create_task(follow(consumer, self.fold), name="status-view")
        self._task.add_done_callback(_log_end)

    @property
    def stopped(self) -> bool:
        """True once the folding task has ended without being asked to."""
        return self._task is not None and self._task.done()

    async def stop(self) -> None:
        """Stop folding and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("status_view_stopped", error=f"{type(error).__name__}: {error}")
