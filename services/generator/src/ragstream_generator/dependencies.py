"""What the handlers are given: settings, metrics, the broker, and the model port."""

from __future__ import annotations

from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker

from ragstream_common.metrics import ServiceMetrics
from ragstream_generator.budget import SpendStore
from ragstream_generator.cache import AnswerCache
from ragstream_generator.metrics import GeneratorMetrics
from ragstream_generator.ports import AnswerModel
from ragstream_generator.settings import GeneratorSettings

__all__ = ["Dependencies", "NotReadyError"]


class NotReadyError(RuntimeError):
    """The model port was used before the app's lifespan built it."""


@dataclass
class Dependencies:
    """The handlers' view of the service, built in ``create_app`` and completed in its lifespan.

    The model is set by the lifespan (or injected by tests), because building the LiteLLM Router
    imports LiteLLM (seconds) and reads its configuration, which must not happen when the app
    object is created.

    Args:
        settings: The service's settings.
        metrics: The metrics every service has.
        broker: The broker handlers publish with.
        llm_port: The answering model behind the router, once built.
        answer_cache: The shared answer cache; None when no Redis is configured.
        spend_store: Where tenants' daily spend adds up; None when no budget is configured.
    """

    settings: GeneratorSettings
    metrics: ServiceMetrics
    broker: KafkaBroker
    llm_port: AnswerModel | None = None
    answer_cache: AnswerCache | None = None
    spend_store: SpendStore | None = None
    generator_metrics: GeneratorMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.generator_metrics = GeneratorMetrics(
            self.metrics,
            drift_baseline_size=self.settings.drift_baseline_answers,
            drift_recent_size=self.settings.drift_recent_answers,
        )

    @property
    def llm(self) -> AnswerModel:
        """The answering model; raises NotReadyError before the lifespan has built it."""
        if self.llm_port is None:
            raise NotReadyError("the LLM router is not built yet")
        return self.llm_port
