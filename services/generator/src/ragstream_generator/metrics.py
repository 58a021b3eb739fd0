"""The generator's own instruments, beside the ones every service has."""

from __future__ import annotations

from ragstream_common.metrics import ServiceMetrics

__all__ = ["GeneratorMetrics"]


class GeneratorMetrics:
    """Answers, tokens and failures by model, registered on the service's registry.

    Stage durations (``generate`` for the whole answer, ``llm`` for the router call) go to the
    shared ``ragstream_stage_duration_seconds`` histogram through ``ServiceMetrics.time_stage``.

    Args:
        base: The service's metrics; the instruments join its registry and naming scheme.
    """

    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.service = base.service
        self.answers = base.counter(
            "answers_total", "Answers published, by the model that wrote them.", ["model"]
        )
        self.tokens = base.counter(
            "llm_tokens_total",
            "Tokens spent, by model and kind (prompt or completion).",
            ["model", "kind"],
        )
        self.llm_failures = base.counter(
            "llm_failures_total",
            "Questions no deployment could answer after retries and fallbacks, by error type.",
            ["error_type"],
        )

    def answered(self, model: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Count one published answer written by ``model`` and the tokens it cost."""
        self.answers.labels(self.service, model).inc()
        if prompt_tokens:
            self.tokens.labels(self.service, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(self.service, model, "completion").inc(completion_tokens)

    def failed(self, error_type: str) -> None:
        """Count one question that no deployment could answer."""
        self.llm_failures.labels(self.service, error_type).inc()
