"""The whole local platform: infrastructure, topics and the five services, started idempotently.

``ensure_platform`` is what ``ragstream up`` and the end-to-end tests call: it installs and starts
what is missing, reuses what already runs (a service whose ``/healthz`` answers on its port is left
alone), and returns where everything listens.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ragstream_cli.stack.kafka import ensure_kafka, stop_kafka
from ragstream_cli.stack.paths import component_dir
from ragstream_cli.stack.processes import ManagedProcess
from ragstream_cli.stack.progress import Reporter
from ragstream_cli.stack.prometheus import ensure_prometheus, stop_prometheus
from ragstream_cli.stack.redis import ensure_redis, redis_url, stop_redis
from ragstream_cli.stack.weaviate import ensure_weaviate, stop_weaviate, weaviate_api_key
from ragstream_common.admin import ensure_topics

__all__ = [
    "SERVICES",
    "Platform",
    "ServiceSpec",
    "ensure_platform",
    "service_process",
    "start_extra_gateway",
    "stop_platform",
]

HOST = "127.0.0.1"
# Loading the model (embedder, retriever) and importing LiteLLM (generator) take a while on a
# cold machine; two cores load them side by side.
SERVICE_START_TIMEOUT_S = 300.0

# Run-time hygiene for machines (and clusters) without internet: nothing may call home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class ServiceSpec:
    """A ragstream service as the local stack runs it."""

    name: str
    port: int

    @property
    def module(self) -> str:
        """The module started with ``python -m``."""
        return f"ragstream_{self.name}"

    @property
    def url(self) -> str:
        """Where its HTTP endpoints listen."""
        return f"http://{HOST}:{self.port}"


# Start order: consumers first, the gateway (the front door) last.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("ingestor", 8101),
    ServiceSpec("embedder", 8102),
    ServiceSpec("retriever", 8103),
    ServiceSpec("generator", 8104),
    ServiceSpec("gateway", 8000),
)


@dataclass(frozen=True)
class Platform:
    """Where the running platform listens."""

    kafka_bootstrap: str
    weaviate_url: str
    gateway_url: str
    service_urls: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).is_success
    except httpx.HTTPError:
        return False


def service_process(
    spec: ServiceSpec, kafka_bootstrap: str, extra_env: dict[str, str] | None = None
) -> ManagedProcess:
    """Describe how the local stack runs ``spec`` as a detached process.

    Args:
        spec: The service and its port.
        kafka_bootstrap: Where Kafka listens.
        extra_env: More ``RAGSTREAM_*`` settings for this process.
    """
    state = component_dir("services")
    instance = f"{spec.name}-{spec.port}"
    env = {
        **OFFLINE_ENV,
        "RAGSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        # The embedder's shared embedding cache (the other services ignore it).
        "RAGSTREAM_REDIS_URL": redis_url(),
        # The local Weaviate's key (the retriever is the one that talks to Weaviate).
        "RAGSTREAM_WEAVIATE_API_KEY": weaviate_api_key(),
        "RAGSTREAM_HTTP_HOST": HOST,
        "RAGSTREAM_HTTP_PORT": str(spec.port),
        "RAGSTREAM_LOG_JSON": "true",
        **(extra_env or {}),
    }
    return ManagedProcess(
        name=instance,
        argv=[sys.executable, "-m", spec.module],
        log_path=state / f"{instance}.log",
        pid_path=state / f"{instance}.pid",
        env=env,
        ready=lambda: _healthy(spec.url),
    )


def _start_services(
    specs: tuple[ServiceSpec, ...], kafka_bootstrap: str, reporter: Reporter
) -> dict[str, str]:
    to_wait: list[tuple[ServiceSpec, ManagedProcess]] = []
    for spec in specs:
        if _healthy(spec.url):
            reporter.info(f"{spec.name}: already running at {spec.url}, reusing it")
            continue
        process = service_process(spec, kafka_bootstrap)
        if process.is_running():
            # Alive but not healthy yet: an earlier start is still loading; wait for it below.
            to_wait.append((spec, process))
            continue
        process.start()
        to_wait.append((spec, process))
    for spec, process in to_wait:
        with reporter.step(f"Starting {spec.name} on {spec.url}", log_path=process.log_path):
            process.wait_ready(SERVICE_START_TIMEOUT_S)
    return {spec.name: spec.url for spec in specs}


def ensure_platform(reporter: Reporter | None = None, *, with_prometheus: bool = False) -> Platform:
    """Install and start whatever is missing, reuse what runs, and return where it all listens.

    Args:
        reporter: Progress output; a default one when None.
        with_prometheus: Also run a local Prometheus scraping the services (on 127.0.0.1:9090).
    """
    reporter = reporter or Reporter()
    kafka = ensure_kafka(reporter)
    weaviate = ensure_weaviate(reporter)
    redis = ensure_redis(reporter)
    with reporter.step("Creating topics from the registry"):
        created = asyncio.run(ensure_topics(kafka.endpoint))
    if created:
        reporter.info(f"created {len(created)} topics")
    urls = _start_services(SERVICES, kafka.endpoint, reporter)
    if with_prometheus:
        ensure_prometheus(reporter)
    return Platform(
        kafka_bootstrap=kafka.endpoint,
        weaviate_url=weaviate.endpoint,
        gateway_url=urls["gateway"],
        service_urls=urls,
        redis_url=redis.endpoint,
    )


def start_extra_gateway(platform: Platform, port: int) -> tuple[str, Callable[[], object]]:
    """Start one more gateway replica on ``port``; return its URL and a function that stops it.

    Args:
        platform: The running platform.
        port: The replica's HTTP port.
    """
    spec = ServiceSpec("gateway", port)
    process = service_process(spec, platform.kafka_bootstrap)
    if not _healthy(spec.url):
        if not process.is_running():
            process.start()
        process.wait_ready(SERVICE_START_TIMEOUT_S)
    return spec.url, process.stop


def stop_platform(reporter: Reporter | None = None, *, infrastructure: bool = True) -> None:
    """Stop the services this checkout started (every gateway replica too), then the infrastructure.

    Args:
        reporter: Progress output.
        infrastructure: Also stop Prometheus (if started), Redis, Weaviate and Kafka.
    """
    reporter = reporter or Reporter()
    state = component_dir("services")
    for pid_file in sorted(state.glob("*.pid")) if state.exists() else []:
        name = pid_file.stem
        process = ManagedProcess(
            name=name, argv=[], log_path=state / f"{name}.log", pid_path=pid_file
        )
        if process.stop():
            reporter.info(f"stopped {name}")
    if infrastructure:
        stop_prometheus(reporter)
        stop_redis(reporter)
        stop_weaviate(reporter)
        stop_kafka(reporter)
