"""Tests for the per-tenant daily budget: its rules, and the handlers degrading to the free tier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from ragstream_common.events import ContextRetrieved, QueryRequested, RetrievedChunk
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_generator.budget import budget_for, is_over_budget, utc_day
from ragstream_generator.cascade import affordable_tiers
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.handlers import answer_context
from ragstream_generator.ports import Cascade, Completion
from ragstream_generator.settings import GeneratorSettings

CHUNK = RetrievedChunk(
    chunk_id="ops#0",
    doc_id="ops",
    title="Operations",
    text="The gateway listens on port 8000.",
    position=0,
    score=0.8,
)
TIERS = ("cheap", "strong", "local")
# Any URL will do: the fakes below stand in for everything that would use it.
REDIS_URL = "redis://127.0.0.1:1/0"


class FakeSpendStore:
    """A SpendStore in a dict, optionally failing every call."""

    def __init__(self, spent: Mapping[str, float] | None = None, *, fail: bool = False) -> None:
        self.totals: dict[tuple[str, str], float] = {
            (tenant, utc_day()): usd for tenant, usd in (spent or {}).items()
        }
        self.fail = fail

    async def spent(self, tenant: str, day: str) -> float:
        if self.fail:
            raise ConnectionError("spend store down")
        return self.totals.get((tenant, day), 0.0)

    async def add(self, tenant: str, day: str, usd: float) -> None:
        if self.fail:
            raise ConnectionError("spend store down")
        self.totals[(tenant, day)] = self.totals.get((tenant, day), 0.0) + usd


class TieredModel:
    """An AnswerModel whose paid tiers cost a cent and whose last tier is free."""

    def __init__(self) -> None:
        self.cascade = Cascade(tiers=TIERS)
        self.groups: list[str | None] = []

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        self.groups.append(model_group)
        model = f"fake/{model_group}"
        return Completion(
            text="The gateway listens on port 8000 [1].",
            model=model,
            prompt_tokens=10,
            completion_tokens=5,
            cost_usd=0.0 if model_group == "local" else 0.01,
            attempts=(model,),
        )


def _deps(store: FakeSpendStore | None, **settings: Any) -> Dependencies:
    config = GeneratorSettings(redis_url=REDIS_URL, warm_up=False, **settings)
    metrics = ServiceMetrics("generator")
    return Dependencies(
        settings=config,
        metrics=metrics,
        broker=create_broker(config, metrics),
        llm_port=TieredModel(),
        spend_store=store,
    )


async def _ask(deps: Dependencies, tenant: str = "acme") -> Any:
    query = QueryRequested(text="Which port?", reply_to="gw", tenant=tenant)
    return await answer_context(ContextRetrieved(query=query, chunks=[CHUNK]), deps)


def _degraded(deps: Dependencies, tenant: str) -> float | None:
    return deps.metrics.registry.get_sample_value(
        "ragstream_budget_degraded_total", {"service": "generator", "tenant": tenant}
    )


class TestBudgetFor:
    def test_override_beats_default(self) -> None:
        """A tenant named in the overrides gets its own budget, others the default."""
        assert budget_for("acme", 1.0, {"acme": 5.0}) == 5.0
        assert budget_for("other", 1.0, {"acme": 5.0}) == 1.0

    def test_no_budget_by_default(self) -> None:
        """Without a default or an override a tenant has no budget."""
        assert budget_for("acme", None, {}) is None


class TestIsOverBudget:
    def test_reaching_the_budget_exhausts_it(self) -> None:
        """Spend equal to the budget is over it; less is not; no budget never is."""
        assert is_over_budget(1.0, 1.0)
        assert not is_over_budget(0.99, 1.0)
        assert not is_over_budget(1e9, None)


class TestUtcDay:
    def test_days_are_utc(self) -> None:
        """23:30 at UTC-2 is already the next UTC day."""
        late = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
        assert utc_day(late) == "2026-03-02"
        assert utc_day(datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) == "2026-03-01"


class TestAffordableTiers:
    def test_over_budget_keeps_only_the_last_tier(self) -> None:
        """Over budget the cascade shrinks to its last (free) tier; otherwise it is whole."""
        cascade = Cascade(tiers=TIERS)
        assert affordable_tiers(cascade, over_budget=True) == ("local",)
        assert affordable_tiers(cascade, over_budget=False) == TIERS


class TestSettings:
    def test_budget_without_redis_fails_fast(self) -> None:
        """A budget nothing could enforce across replicas is refused at startup."""
        with pytest.raises(ValidationError, match="redis_url"):
            GeneratorSettings(tenant_budget_usd_per_day=1.0)

    def test_overrides_read_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Per-tenant budgets come from one JSON environment variable."""
        monkeypatch.setenv("RAGSTREAM_TENANT_BUDGETS_USD_PER_DAY", '{"acme": 2.5}')
        monkeypatch.setenv("RAGSTREAM_REDIS_URL", REDIS_URL)
        assert GeneratorSettings().tenant_budgets_usd_per_day == {"acme": 2.5}


class TestBudgetInHandlers:
    async def test_over_budget_tenant_is_answered_by_the_free_tier(self) -> None:
        """A tenant past its budget is answered by the last tier alone, and the degradation shows."""
        store = FakeSpendStore({"acme": 1.0})
        deps = _deps(store, tenant_budget_usd_per_day=1.0)

        answer = await _ask(deps)

        assert deps.llm.groups == ["local"]  # type: ignore[attr-defined]  # the TieredModel fake
        assert answer.model == "fake/local"
        assert answer.attempts == ["fake/local"]
        assert answer.error is None
        assert _degraded(deps, "acme") == 1

    async def test_under_budget_climbs_the_whole_cascade_and_records_spend(self) -> None:
        """A tenant within budget asks the cheap tier first, and what it cost is added to its day."""
        store = FakeSpendStore({"acme": 0.5})
        deps = _deps(store, tenant_budget_usd_per_day=1.0)

        answer = await _ask(deps)

        assert answer.model == "fake/cheap"
        assert store.totals[("acme", utc_day())] == pytest.approx(0.51)
        assert _degraded(deps, "acme") is None

    async def test_override_applies_to_its_tenant_only(self) -> None:
        """A tenant with a zero override is degraded; another, without a budget, is not."""
        deps = _deps(FakeSpendStore(), tenant_budgets_usd_per_day={"free": 0.0})

        assert (await _ask(deps, "free")).model == "fake/local"
        assert (await _ask(deps, "paying")).model == "fake/cheap"

    async def test_failing_spend_store_never_fails_or_degrades_an_answer(self) -> None:
        """A spend store that is down counts an error; the answer comes from the cheap tier."""
        deps = _deps(FakeSpendStore(fail=True), tenant_budget_usd_per_day=1.0)

        answer = await _ask(deps)

        assert answer.model == "fake/cheap"
        assert answer.error is None
        errors = {
            operation: deps.metrics.registry.get_sample_value(
                "ragstream_budget_errors_total",
                {"service": "generator", "operation": operation},
            )
            for operation in ("read", "add")
        }
        assert errors == {"read": 1, "add": 1}

    async def test_no_budget_reads_no_spend(self) -> None:
        """Without a budget the store is never asked and the whole cascade is used."""
        store = FakeSpendStore(fail=True)  # would count errors if it were asked
        deps = _deps(store)

        assert (await _ask(deps)).model == "fake/cheap"
        assert (
            deps.metrics.registry.get_sample_value(
                "ragstream_budget_errors_total", {"service": "generator", "operation": "read"}
            )
            is None
        )
