"""The per-tenant daily budget: its rules as pure functions, and the port its spend store implements.

A tenant's spend is what its answers' model calls cost (LiteLLM's prices), added up per UTC day in
a store every replica shares. Once it reaches the tenant's budget, the cascade skips the tiers that
cost money and answers with the last, free one (see ``cascade.affordable_tiers``): a budget
degrades answers, it never fails them. Without a budget (the default) nothing is tracked.

``tiers_within_budget`` and ``record_spend`` are the two calls the handlers make; a failing store
counts as "not over budget" and loses that addition, never the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from ragstream_common.logging import get_logger
from ragstream_generator.cascade import affordable_tiers

if TYPE_CHECKING:
    from ragstream_generator.dependencies import Dependencies

__all__ = [
    "SpendStore",
    "budget_for",
    "is_over_budget",
    "record_spend",
    "tiers_within_budget",
    "utc_day",
]

_log = get_logger(__name__)


def budget_for(
    tenant: str, default_usd: float | None, overrides_usd: Mapping[str, float]
) -> float | None:
    """Return ``tenant``'s daily budget in US dollars, or None when it has none.

    Args:
        tenant: The asking tenant.
        default_usd: Every tenant's budget; None: no budget.
        overrides_usd: Budgets of named tenants, taking precedence over the default.
    """
    return overrides_usd.get(tenant, default_usd)


def is_over_budget(spent_usd: float, budget_usd: float | None) -> bool:
    """Whether a tenant that spent ``spent_usd`` today has exhausted ``budget_usd``.

    Args:
        spent_usd: What the tenant's model calls cost so far today.
        budget_usd: Its daily budget; None: unlimited.
    """
    return budget_usd is not None and spent_usd >= budget_usd


def utc_day(now: datetime | None = None) -> str:
    """Return the UTC day ``now`` falls in (the current one when None), as ``YYYY-MM-DD``.

    Args:
        now: An aware datetime.
    """
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


class SpendStore(Protocol):
    """Where tenants' daily spend adds up, shared by every replica."""

    async def spent(self, tenant: str, day: str) -> float:
        """Return what ``tenant`` spent on ``day`` (``YYYY-MM-DD``, UTC), 0.0 when nothing."""
        ...

    async def add(self, tenant: str, day: str, usd: float) -> None:
        """Add ``usd`` to what ``tenant`` spent on ``day``."""
        ...


async def tiers_within_budget(deps: Dependencies, tenant: str) -> tuple[str, ...]:
    """Return the cascade tiers ``tenant`` may use today; counts a degradation when cut.

    Args:
        deps: The service's dependencies (settings, spend store, metrics, model).
        tenant: The asking tenant.
    """
    cascade = deps.llm.cascade
    settings = deps.settings
    budget = budget_for(
        tenant, settings.tenant_budget_usd_per_day, settings.tenant_budgets_usd_per_day
    )
    store = deps.spend_store
    if budget is None or store is None:
        return cascade.tiers
    try:
        async with asyncio.timeout(settings.answer_cache_timeout_s * 4):
            spent = await store.spent(tenant, utc_day())
    except Exception as error:  # an unknown spend is not a reason to refuse or degrade
        deps.generator_metrics.budget_failed("read")
        _log.warning("spend_read_failed", error_type=type(error).__name__)
        return cascade.tiers
    tiers = affordable_tiers(cascade, over_budget=is_over_budget(spent, budget))
    if tiers != cascade.tiers:
        deps.generator_metrics.budget_degraded(tenant)
        _log.info("budget_degraded", tenant=tenant, spent_usd=spent, budget_usd=budget, tiers=tiers)
    return tiers


async def record_spend(deps: Dependencies, tenant: str, usd: float) -> None:
    """Add what an answer's model calls cost to ``tenant``'s spend today, when budgets are on.

    Args:
        deps: The service's dependencies.
        tenant: The asking tenant.
        usd: What the answer cost (cached calls cost nothing).
    """
    store = deps.spend_store
    if store is None or usd <= 0 or not deps.settings.budgets_enabled:
        return
    try:
        async with asyncio.timeout(deps.settings.answer_cache_timeout_s * 4):
            await store.add(tenant, utc_day(), usd)
    except Exception as error:  # the answer is made; only this addition is lost
        deps.generator_metrics.budget_failed("add")
        _log.warning("spend_add_failed", error_type=type(error).__name__)
