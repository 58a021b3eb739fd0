"""The generator's own instruments, beside the ones every service has."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ragstream_common.drift import DEFAULT_BASELINE_SIZE, DEFAULT_RECENT_SIZE, MeanDriftDetector
from ragstream_common.metrics import ServiceMetrics

__all__ = ["GROUNDEDNESS_BUCKETS", "TTFT_BUCKETS", "GeneratorMetrics"]

# Time to first token: milliseconds for the local model, up to seconds for a hosted one.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUNDEDNESS_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0)


class GeneratorMetrics:
    """Answers, tokens, cost, retries, fallbacks and groundedness, on the service's registry.

    Stage durations (``generate`` for the whole answer, ``llm`` for the router calls) go to the
    shared ``ragstream_stage_duration_seconds`` histogram through ``ServiceMetrics.time_stage``.

    Two drift detectors (``ragstream_common.drift``) watch this replica's answers: the mean
    groundedness of the last M answers a model wrote (``ragstream_groundedness_recent``) and the
    share of the last M answers that were the does-not-know answer
    (``ragstream_unknown_answer_ratio``), each beside the same figure over the replica's first N
    (``*_baseline``) for alerts on a change. All four are NaN, and
    ``ragstream_drift_baseline_ready{detector}`` 0, until the detector's baseline is full.

    Args:
        base: The service's metrics; the instruments join its registry and naming scheme.
        drift_baseline_size: Answers in each drift detector's baseline.
        drift_recent_size: Answers in each drift detector's recent window.
    """

    def __init__(
        self,
        base: ServiceMetrics,
        *,
        drift_baseline_size: int = DEFAULT_BASELINE_SIZE,
        drift_recent_size: int = DEFAULT_RECENT_SIZE,
    ) -> None:
        self.base = base
        self.service = base.service
        self.answers = base.counter(
            "answers_total", "Answers published, by the model that wrote them.", ["model"]
        )
        self.tokens = base.counter(
            "llm_tokens_total",
            "Tokens spent, by tenant, model and kind (prompt or completion).",
            ["tenant", "model", "kind"],
        )
        self.cost = base.counter(
            "llm_cost_usd_total",
            "Model spend in US dollars, by tenant and model.",
            ["tenant", "model"],
        )
        self.retries = base.counter(
            "llm_retries_total", "Calls the router repeated on the same deployment.", ["model"]
        )
        self.fallbacks = base.counter(
            "llm_fallbacks_total",
            "Moves to another deployment: `fallback` inside the router, `escalation` to the "
            "next cascade tier.",
            ["kind"],
        )
        self.llm_failures = base.counter(
            "llm_failures_total",
            "Questions no cascade tier could answer (after retries and fallbacks), by error type.",
            ["error_type"],
        )
        self.groundedness = base.histogram(
            "answer_groundedness",
            "Share of each answer's sentences supported by the retrieved passages.",
            buckets=GROUNDEDNESS_BUCKETS,
        )
        self.time_to_first_token = base.histogram(
            "time_to_first_token_seconds",
            "Streamed answers: from the context's arrival to the first delta published.",
            buckets=TTFT_BUCKETS,
        )

        self.cache_hits = base.counter(
            "answer_cache_hits_total",
            "Answers served from a cache, by tenant and kind: `exact` or `semantic` (the answer "
            "caches) or `llm` (LiteLLM's call cache served the answering call).",
            ["tenant", "kind"],
        )
        self.cache_errors = base.counter(
            "answer_cache_errors_total",
            "Answer cache calls that failed (the answer went on without the cache), by operation.",
            ["operation"],
        )
        self.budget_degradations = base.counter(
            "budget_degraded_total",
            "Answers kept on the free tier because the tenant had spent its daily budget.",
            ["tenant"],
        )
        self.budget_errors = base.counter(
            "budget_errors_total",
            "Spend store calls that failed (the answer went on unbudgeted), by operation.",
            ["operation"],
        )

        self.groundedness_recent = base.gauge(
            "groundedness_recent",
            "Mean groundedness of the last M answers a model wrote on this replica (not cached, "
            "not does-not-know, not failed); NaN until the baseline is full.",
        )
        self.groundedness_baseline = base.gauge(
            "groundedness_baseline",
            "Mean groundedness of the first N answers a model wrote on this replica; NaN until "
            "there are N.",
        )
        self.unknown_answer_ratio = base.gauge(
            "unknown_answer_ratio",
            "Share of the last M answers on this replica that were the does-not-know answer; "
            "NaN until the baseline is full.",
        )
        self.unknown_answer_ratio_baseline = base.gauge(
            "unknown_answer_ratio_baseline",
            "Share of the first N answers on this replica that were the does-not-know answer; "
            "NaN until there are N.",
        )
        self._watch_drift(drift_baseline_size, drift_recent_size)

    def _watch_drift(self, baseline_size: int, recent_size: int) -> None:
        """Start the drift detectors afresh with these windows: a new baseline fills first.

        Args:
            baseline_size: Answers in the baseline (the first ones from now, then frozen).
            recent_size: Answers in the sliding recent window.
        """
        self._groundedness = MeanDriftDetector(baseline_size, recent_size)
        self._unknown_answers = MeanDriftDetector(baseline_size, recent_size)
        self._publish_drift()

    def observe_answer_quality(self, *, does_not_know: bool, groundedness: float | None) -> None:
        """Feed one published answer to the drift detectors, in O(1).

        Args:
            does_not_know: Whether it was the does-not-know answer (nothing relevant retrieved).
            groundedness: Its groundedness when a model wrote it just now, else None (cached,
                does-not-know and failed answers say nothing about the model's grounding).
        """
        self._unknown_answers.observe(1.0 if does_not_know else 0.0)
        if groundedness is not None:
            self._groundedness.observe(groundedness)
        self._publish_drift()

    def _publish_drift(self) -> None:
        service = self.service
        self.groundedness_recent.labels(service).set(self._groundedness.recent_mean)
        self.groundedness_baseline.labels(service).set(self._groundedness.baseline_mean)
        self.unknown_answer_ratio.labels(service).set(self._unknown_answers.recent_mean)
        self.unknown_answer_ratio_baseline.labels(service).set(self._unknown_answers.baseline_mean)
        for detector, ready in (
            ("groundedness", self._groundedness.baseline_full),
            ("unknown_answer_ratio", self._unknown_answers.baseline_full),
        ):
            self.base.drift_baseline(detector, ready)

    def budget_degraded(self, tenant: str) -> None:
        """Count one answer ``tenant``'s exhausted budget kept on the free tier."""
        self.budget_degradations.labels(self.service, tenant).inc()

    def budget_failed(self, operation: str) -> None:
        """Count one failed spend store call (``read`` or ``add``)."""
        self.budget_errors.labels(self.service, operation).inc()

    def cache_hit(self, tenant: str, kind: str) -> None:
        """Count one answer served from the ``kind`` cache for ``tenant``."""
        self.cache_hits.labels(self.service, tenant, kind).inc()

    def cache_failed(self, operation: str) -> None:
        """Count one failed cache call (``lookup`` or ``store``)."""
        self.cache_errors.labels(self.service, operation).inc()

    def first_token(self, seconds: float) -> None:
        """Record one streamed answer's time to its first delta."""
        self.time_to_first_token.labels(self.service).observe(seconds)

    def answered(self, model: str, groundedness: float | None = None) -> None:
        """Count one published answer written by ``model``, with its groundedness."""
        self.answers.labels(self.service, model).inc()
        if groundedness is not None:
            self.groundedness.labels(self.service).observe(groundedness)

    def spent(
        self, tenant: str, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None:
        """Count the tokens and cost of one model reply, for ``tenant``."""
        if prompt_tokens:
            self.tokens.labels(self.service, tenant, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(self.service, tenant, model, "completion").inc(completion_tokens)
        if cost_usd:
            self.cost.labels(self.service, tenant, model).inc(cost_usd)

    def attempted(self, attempts: Sequence[str]) -> None:
        """Count one router call's retries (a deployment repeated) and fallbacks (one changed)."""
        for before, after in itertools.pairwise(attempts):
            if before == after:
                self.retries.labels(self.service, before).inc()
            else:
                self.fallbacks.labels(self.service, "fallback").inc()

    def escalated(self, times: int) -> None:
        """Count cascade escalations."""
        if times:
            self.fallbacks.labels(self.service, "escalation").inc(times)

    def failed(self, error_type: str) -> None:
        """Count one question that no tier could answer."""
        self.llm_failures.labels(self.service, error_type).inc()
