"""Wiring: the ingestor's broker, router, tokenizer, metrics and health endpoints.

Nothing runs at import.
"""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_ingestor.adapters.tokenizer import load_word_piece_counter
from ragstream_ingestor.chunking import TokenCounter
from ragstream_ingestor.handlers import Dependencies, build_router
from ragstream_ingestor.settings import IngestorSettings

__all__ = ["create_app"]


def create_app(
    settings: IngestorSettings | None = None, token_counter: TokenCounter | None = None
) -> AsgiFastStream:
    """Build the ingestor: a worker consuming ``documents``, serving ``/metrics`` and ``/healthz``.

    The tokenizer is loaded here, from the installed model package (a local file read of a few
    tens of milliseconds), so that a missing file or a budget the model cannot read fails at
    startup rather than on the first document. The ingestor holds no other client beyond the
    broker, so it needs no lifespan of its own.

    Args:
        settings: The service's settings; read from the environment when None.
        token_counter: Counts the model's word pieces; the packaged all-MiniLM-L6-v2 tokenizer
            when None (tests pass one loaded once).

    Raises:
        ValueError: ``chunk_max_tokens`` is above what the model reads.
    """
    settings = settings if settings is not None else IngestorSettings()
    if token_counter is None:
        counter = load_word_piece_counter()
        if settings.chunk_max_tokens > counter.max_tokens:
            raise ValueError(
                f"chunk_max_tokens={settings.chunk_max_tokens} is above the model's input limit"
                f" of {counter.max_tokens} word pieces: the rest of each chunk would be dropped"
            )
        token_counter = counter
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    deps = Dependencies(
        settings=settings, metrics=metrics, broker=broker, token_counter=token_counter
    )
    broker.include_router(build_router(deps))
    return worker_app(broker, metrics, settings=settings, lag_groups=[settings.consumer_group])
