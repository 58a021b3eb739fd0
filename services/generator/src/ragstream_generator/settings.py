"""The generator's settings, read once from ``RAGSTREAM_*`` environment variables."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

from pydantic import Field, FilePath, field_validator, model_validator

from ragstream_common.drift import DEFAULT_BASELINE_SIZE, DEFAULT_RECENT_SIZE
from ragstream_common.settings import ServiceSettings

__all__ = ["GeneratorSettings", "packaged_router_config"]


def packaged_router_config() -> Path:
    """Return the router configuration shipped inside the package (the local extractive model)."""
    return Path(str(files("ragstream_generator").joinpath("config", "router.yaml")))


class GeneratorSettings(ServiceSettings):
    """Which LiteLLM Router configuration to load, which model group answers, and the budgets."""

    service_name: str = "generator"
    http_port: int = 8104

    # A LiteLLM Router configuration: ``model_list`` plus ``router_settings`` (retries, per-attempt
    # timeout, fallbacks). Checked to exist at startup so a bad mount fails fast.
    router_config: FilePath = Field(default_factory=packaged_router_config, validate_default=True)
    # The model group every answer is asked of; the router's fallbacks take it from there.
    model_group: str = Field(default="answerer", min_length=1)
    # The whole call's budget, retries and fallbacks included; a query waiting longer than this
    # is better answered with an error than left hanging at the gateway.
    request_timeout_s: float = Field(default=60.0, gt=0)
    # Contexts waiting together, up to this many, are answered concurrently as one batch (its
    # offsets committed when the slowest is answered). Waiting for more (above 0 ms) would only
    # delay a lone question.
    batch_max_messages: int = Field(default=32, ge=1)
    batch_max_wait_ms: int = Field(default=0, ge=0)
    # How much retrieved text goes into one prompt, in words (a cheap proxy for tokens): passages
    # are kept in rank order until the budget is spent.
    max_context_words: int = Field(default=3000, ge=50)
    # Chunks scoring below this are not evidence: when none reaches it, the answer is the
    # does-not-know sentence and no model is asked. The retriever already cuts at its own
    # min_score; this is the generator's floor (scores are the retriever's, in [0, 1]).
    min_relevance: float = Field(default=0.05, ge=0.0, le=1.0)
    # The share of an answer sentence's content terms that its cited passages must contain for
    # the sentence to count as supported (see groundedness.py).
    support_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    # The prompt template, a file under ragstream_generator/prompts/ (e.g. answer-v1).
    prompt_version: str = Field(default="answer-v1", min_length=1)
    # One call to the local model at startup, so the first query does not pay LiteLLM's lazy
    # imports (about half a second); it never reaches a hosted provider.
    warm_up: bool = True

    # The Redis every replica shares, for the answer caches, LiteLLM's call cache and the
    # tenants' daily spend; None (or empty): no caching and no budget.
    redis_url: str | None = None
    # A model reply LiteLLM cached (per tenant, per model group and exact request) lives this long.
    llm_cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    # A cached answer lives this long after it was stored (the safety rule, not the TTL, is what
    # keeps changed documents out; the TTL bounds memory and staleness of wording).
    answer_cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Whether a question may be served the answer of an earlier, differently worded one. Off by
    # default: no threshold on the embedding's cosine tells a paraphrase from a question that
    # changes one word ("within one partition" / "across partitions" score 0.986 while half the
    # benchmark's paraphrases score under 0.83), and retrieval ranks the same passage first for
    # both, so such a question would get the other's answer (bench/README.md).
    semantic_cache: bool = False
    # The least cosine similarity between two questions' vectors for the semantic cache to
    # treat them as the same question.
    semantic_cache_threshold: float = Field(default=0.92, ge=0.0, le=1.0)
    # Recent answers per tenant the semantic lookup scans (brute force, newest first).
    semantic_cache_entries: int = Field(default=256, ge=1)
    # Connect and read timeout of a cache call: past it, the answer goes on without the cache.
    answer_cache_timeout_s: float = Field(default=0.25, gt=0)

    # Every tenant's daily budget in US dollars (UTC days); past it the cascade answers with its
    # last, free tier only. None: no budget.
    tenant_budget_usd_per_day: float | None = Field(default=None, ge=0)
    # Budgets of named tenants, overriding the default, as JSON: {"acme": 5.0, "free-tier": 0.1}.
    tenant_budgets_usd_per_day: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )

    # Quality drift (ragstream_groundedness_recent, ragstream_unknown_answer_ratio): the first
    # this many answers a replica publishes are its baseline, frozen once full, and the last
    # drift_recent_answers are compared against it. The alert thresholds in
    # ragstream_common.drift are chosen for the defaults; smaller windows are noisier.
    drift_baseline_answers: int = Field(default=DEFAULT_BASELINE_SIZE, ge=2)
    drift_recent_answers: int = Field(default=DEFAULT_RECENT_SIZE, ge=2)

    @property
    def budgets_enabled(self) -> bool:
        """Whether any tenant has a budget (and spend must be tracked)."""
        return self.tenant_budget_usd_per_day is not None or bool(self.tenant_budgets_usd_per_day)

    @model_validator(mode="after")
    def _budgets_need_redis(self) -> GeneratorSettings:
        # Spend must add up across replicas; a budget nobody enforces is worse than none.
        if self.budgets_enabled and self.redis_url is None:
            raise ValueError("a tenant budget needs redis_url, where spend is tracked")
        return self

    @field_validator("redis_url")
    @classmethod
    def _empty_url_means_no_cache(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None
