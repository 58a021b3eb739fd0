"""The settings every service shares; each service subclasses ``ServiceSettings``.

Settings are read from ``RAGSTREAM_*`` environment variables once, at startup, and passed down.
Nothing else in the codebase reads ``os.environ``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Broker, HTTP, logging and tracing settings common to all services."""

    model_config = SettingsConfigDict(env_prefix="RAGSTREAM_", extra="ignore", frozen=True)

    service_name: str = "ragstream"
    kafka_bootstrap: str = "127.0.0.1:9092"
    http_host: str = "127.0.0.1"
    http_port: int = 8100
    # How long an idle HTTP/1.1 connection stays open: longer than the idle timeout of the usual
    # clients and load balancers in front (httpx 5 s, AWS's ALB 60 s), so they close first. A
    # server that closes first races a request the client sends at that moment, which then fails
    # with a reset: with uvicorn's default of 5 s, a benchmark request to the gateway did.
    http_keep_alive_s: int = Field(default=75, ge=1)
    log_level: str = "INFO"
    # None: JSON when stdout is not a terminal, a readable console format when it is.
    log_json: bool | None = None
    # Where spans go: an OTLP/HTTP collector's base URL (http://collector:4318) or its full traces
    # URL. None exports nothing, but spans are still made, so trace ids exist, travel in the
    # Kafka headers and stamp the logs (see ragstream_common.tracing).
    otlp_endpoint: str | None = None
    # The one protocol the installed exporter speaks; gRPC would need another exporter package.
    otlp_protocol: Literal["http/protobuf"] = "http/protobuf"
    # The share of traces recorded, decided once where a trace starts and followed downstream.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # The broker answers a waiting fetch as soon as a record arrives, so a long wait costs no
    # latency; a short one only makes idle consumers poll. Measured here (bench/spine.py, same
    # stack): 10 ms kept 2 cores 39% busy at idle and slowed queries (median 105-112 ms); 500 ms
    # idles at 7% with a median of 62-68 ms.
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    kafka_linger_ms: int = Field(default=0, ge=0)
    # The most bytes the producer gathers for one partition before it must send them. aiokafka's
    # default, 16 KiB, is less than one document's embeddings (~27 KB), so each of those went in
    # a produce request of its own and the next record to that partition waited for it to leave.
    # Kept at half of Kafka's default max.message.bytes, the lowest limit of any topic here: a
    # batch is one message to the broker.
    kafka_max_batch_bytes: int = Field(default=512 * 1024, ge=1024)
    kafka_max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # How often a worker reads its consumer groups' lag into ragstream_consumer_lag: two small
    # admin requests per refresh, and fresher than a Prometheus scrape interval needs.
    lag_refresh_s: float = Field(default=10.0, gt=0)
