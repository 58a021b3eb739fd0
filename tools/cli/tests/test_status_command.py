"""Tests for ``ragstream status``: the operations view when Kafka answers, a note when it does not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import ragstream_cli.__main__ as cli
from ragstream_cli.operations_readings import read_operations
from ragstream_cli.stack import ensure_weaviate, weaviate_api_key, weaviate_url
from ragstream_cli.stack.components import ComponentStatus
from ragstream_common.topics import TOPICS

BOOTSTRAP = "127.0.0.1:9092"


class TestStatusWithoutKafka:
    def test_prints_the_table_and_a_note_quickly(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With Kafka stopped, status prints the components table and says why nothing follows."""
        monkeypatch.setattr(cli, "stack_status_table", lambda services: "COMPONENTS")
        monkeypatch.setattr(cli, "kafka_status", _stopped_kafka)
        started = time.perf_counter()

        assert cli.main(["status"]) == 0

        output = capsys.readouterr().out
        assert "COMPONENTS" in output
        assert "Kafka is not running" in output
        assert time.perf_counter() - started < 5

    def test_unanswering_kafka_is_a_note_not_a_crash(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A Kafka that looks up but cannot be reached ends in a note and exit code 0."""
        monkeypatch.setattr(cli, "stack_status_table", lambda services: "COMPONENTS")
        monkeypatch.setattr(cli, "kafka_status", _running_kafka)
        # Nothing listens on port 1: the connection is refused at once.
        monkeypatch.setattr(cli, "kafka_bootstrap", lambda: "127.0.0.1:1")

        assert cli.main(["status", "--interval", "0.1"]) == 0

        assert "no operations view" in capsys.readouterr().out


def _kafka(running: bool) -> ComponentStatus:
    return ComponentStatus(
        name="kafka",
        version="test",
        installed=True,
        install_dir=Path("kafka"),
        running=running,
        managed=True,
        pid=None,
        port=9,
        endpoint="127.0.0.1:9",
        log_path=Path("kafka.log"),
    )


def _stopped_kafka() -> ComponentStatus:
    return _kafka(running=False)


def _running_kafka() -> ComponentStatus:
    return _kafka(running=True)


@pytest.mark.stack
class TestReadOperationsOnKafka:
    async def test_end_offsets_and_lag_match_kafka(self) -> None:
        """Every registry topic is reported, with end offsets and lags Kafka itself confirms."""
        snapshot = await read_operations(
            BOOTSTRAP,
            interval_s=0.2,
            retriever_url="http://127.0.0.1:1",
            weaviate_url="http://127.0.0.1:1",
        )

        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        await consumer.start()
        try:
            descriptions = await admin.describe_topics([spec.name for spec in TOPICS])
            partitions = [
                TopicPartition(d["topic"], p["partition"])
                for d in descriptions
                for p in d["partitions"]
            ]
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
            await admin.close()

        assert [activity.topic for activity in snapshot.topics] == [spec.name for spec in TOPICS]
        for activity in snapshot.topics:
            now = sum(offset for tp, offset in ends.items() if tp.topic == activity.topic)
            # Read after the snapshot: the topic can only have grown since.
            assert activity.end_offset_total <= now
            assert activity.messages_per_s is not None
            assert activity.messages_per_s >= 0
            assert all(lag >= 0 for lag in activity.lag_by_group.values())
        # Unreachable retriever and Weaviate: no reading, rather than a failure.
        assert snapshot.freshness_p50_s is None
        assert snapshot.index_sizes is None

    async def test_index_sizes_come_with_the_local_key(self) -> None:
        """The local Weaviate asks for its key: with it the view has the sizes, without it none."""
        ensure_weaviate()

        async def sizes(key: str | None) -> dict[str, int] | None:
            snapshot = await read_operations(
                BOOTSTRAP,
                interval_s=0.1,
                retriever_url="http://127.0.0.1:1",
                weaviate_url=weaviate_url(),
                weaviate_api_key=key,
            )
            return snapshot.index_sizes

        assert await sizes(None) is None
        assert isinstance(await sizes(weaviate_api_key()), dict)
