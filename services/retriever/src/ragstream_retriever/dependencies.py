"""What the handlers are given: settings, metrics, the broker, and the two ports."""

from __future__ import annotations

from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker

from ragstream_common.metrics import ServiceMetrics
from ragstream_retriever.metrics import RetrieverMetrics
from ragstream_retriever.ports import ChunkIndex, QueryEmbedder
from ragstream_retriever.settings import RetrieverSettings

__all__ = ["Dependencies", "NotReadyError"]


class NotReadyError(RuntimeError):
    """A port was used before the app's lifespan connected it."""


@dataclass
class Dependencies:
    """The handlers' view of the service, built in ``create_app`` and completed in its lifespan.

    The index and the model are set by the lifespan (or injected by tests), because building them
    is I/O that must not happen when the app object is created.

    Args:
        settings: The service's settings.
        metrics: The metrics every service has.
        broker: The broker handlers publish with.
        index_port: The chunk index, once connected.
        model_port: The query embedding model, once loaded.
    """

    settings: RetrieverSettings
    metrics: ServiceMetrics
    broker: KafkaBroker
    index_port: ChunkIndex | None = None
    model_port: QueryEmbedder | None = None
    retriever_metrics: RetrieverMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.retriever_metrics = RetrieverMetrics(
            self.metrics,
            drift_baseline_size=self.settings.drift_baseline_queries,
            drift_recent_size=self.settings.drift_recent_queries,
        )

    @property
    def index(self) -> ChunkIndex:
        """The chunk index; raises NotReadyError before the lifespan has connected it."""
        if self.index_port is None:
            raise NotReadyError("the chunk index is not connected yet")
        return self.index_port

    @property
    def model(self) -> QueryEmbedder:
        """The query model; raises NotReadyError before the lifespan has loaded it."""
        if self.model_port is None:
            raise NotReadyError("the embedding model is not loaded yet")
        return self.model_port
