"""Routing over real HTTP: the LiteLLM Router and the cascade against the fault-injecting fake server.

Each test writes a router YAML pointing ``openai/<name>`` deployments at the fake server on
loopback, tells the server how each deployment behaves, and checks what answered, what was tried
and what it cost, through the real LiteLLM client code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragstream_common.events import (
    AnswerCompleted,
    ContextRetrieved,
    QueryRequested,
    RetrievedChunk,
)
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_fakellm import UNGROUNDED_ANSWER, RunningServer, run_in_thread
from ragstream_generator.adapters.llm import (
    build_answer_model,
    load_router_config,
    register_attempt_recorder,
)
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.domain import NO_CONTEXT_ANSWER, NO_MODEL, build_messages
from ragstream_generator.handlers import answer_context
from ragstream_generator.settings import GeneratorSettings, packaged_router_config

# LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

E2E_CONFIG = packaged_router_config().with_name("router.e2e.yaml")
STALL_TIMEOUT_S = 1.0
# Connection setup, LiteLLM's bookkeeping and the fallback's own answer, on a loaded 2-core box.
STALL_MARGIN_S = 2.0

CHUNKS = [
    RetrievedChunk(
        chunk_id="ops#0",
        doc_id="ops",
        title="Operations",
        text="The gateway listens on port 8000. Metrics are scraped every 15 seconds.",
        position=0,
        score=0.8,
    ),
    RetrievedChunk(
        chunk_id="kafka#3",
        doc_id="kafka",
        title="Kafka notes",
        text="The partition count is the ceiling of each consumer's replicas.",
        position=3,
        score=0.6,
    ),
]
QUESTION = "Which port does the gateway listen on?"


def _deployment(group: str, model: str, server: RunningServer, **params: Any) -> str:
    extra = "".join(f"\n      {key}: {value}" for key, value in params.items())
    return (
        f"  - model_name: {group}\n    litellm_params:\n      model: openai/{model}\n"
        f"      api_base: {server.api_base}\n      api_key: dummy{extra}\n"
    )


LOCAL = "  - model_name: local\n    litellm_params:\n      model: ragstream/extractive\n"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One fake server for the module, on a free loopback port."""
    with run_in_thread() as running:
        yield running


@pytest.fixture
def control(server: RunningServer) -> Iterator[httpx.Client]:
    """A client to the fake server's control API, reset before and after each test."""
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        client.post("/control/reset").raise_for_status()
        yield client
        client.post("/control/reset").raise_for_status()


def _set(control: httpx.Client, model: str, **behaviour: Any) -> None:
    control.post(f"/control/{model}", json=behaviour).raise_for_status()


def _requests(control: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = control.get("/control/stats").json()["requests"]
    return counts


def _deps(tmp_path: Path, yaml_text: str, **overrides: Any) -> Dependencies:
    path = tmp_path / "router.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    settings = GeneratorSettings(router_config=path, warm_up=False, **overrides)
    metrics = ServiceMetrics("generator")
    return Dependencies(
        settings=settings,
        metrics=metrics,
        broker=create_broker(settings, metrics),
        llm_port=build_answer_model(settings),
    )


async def _ask(
    deps: Dependencies, chunks: list[RetrievedChunk] = CHUNKS, tenant: str = "acme"
) -> AnswerCompleted:
    query = QueryRequested(text=QUESTION, reply_to="gw", tenant=tenant)
    return await answer_context(ContextRetrieved(query=query, chunks=chunks), deps)


def _sample(deps: Dependencies, name: str, **labels: str) -> float | None:
    return deps.metrics.registry.get_sample_value(name, {"service": "generator", **labels})


class TestRouterFallbacks:
    async def test_failing_primary_falls_back_over_http(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """A primary answering 500 is replaced by its fallback, and both appear in attempts."""
        _set(control, "primary", mode="fail", status=500)
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "primary", server)
            + _deployment("backup", "fallback", server)
            + "router_settings:\n  num_retries: 0\n  fallbacks: [{answerer: [backup]}]\n",
        )

        answer = await _ask(deps)

        assert answer.model == "openai/fallback"
        assert answer.attempts == ["openai/primary", "openai/fallback"]
        assert answer.answer == "The gateway listens on port 8000. [1]"
        assert _requests(control) == {"primary": 1, "fallback": 1}
        assert _sample(deps, "ragstream_llm_fallbacks_total", kind="fallback") == 1

    async def test_stalling_primary_falls_back_within_its_timeout(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """A primary that stalls past its 1 s timeout is abandoned for the fallback promptly."""
        _set(control, "primary", mode="stall", stall_s=10)
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "primary", server, timeout=STALL_TIMEOUT_S)
            + _deployment("backup", "fallback", server)
            + "router_settings:\n  num_retries: 0\n  fallbacks: [{answerer: [backup]}]\n",
        )
        # The first HTTP call of a process pays LiteLLM's lazy imports: keep them out of the timing.
        await deps.llm.complete(build_messages(QUESTION, CHUNKS), "backup")

        started = time.perf_counter()
        answer = await _ask(deps)
        elapsed = time.perf_counter() - started

        assert answer.model == "openai/fallback"
        assert STALL_TIMEOUT_S <= elapsed < STALL_TIMEOUT_S + STALL_MARGIN_S, elapsed

    async def test_every_remote_deployment_failing_leaves_the_local_model(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """With primary and fallback both down, the local extractive model answers."""
        _set(control, "primary", mode="fail", status=503)
        _set(control, "fallback", mode="fail", status=500)
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "primary", server)
            + _deployment("backup", "fallback", server)
            + LOCAL
            + "router_settings:\n  num_retries: 0\n  fallbacks: [{answerer: [backup, local]}]\n",
        )

        answer = await _ask(deps)

        assert answer.model == LOCAL_MODEL
        assert answer.attempts == ["openai/primary", "openai/fallback", LOCAL_MODEL]
        assert answer.answer.endswith("[1]")
        assert answer.usage is not None
        assert answer.usage.cost_usd == 0.0

    async def test_retries_are_counted(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """Two retries on a failing deployment reach the server as three requests and count as two."""
        _set(control, "primary", mode="fail", status=500)
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "primary", server)
            + _deployment("backup", "fallback", server)
            + "router_settings:\n  num_retries: 2\n  fallbacks: [{answerer: [backup]}]\n",
        )

        answer = await _ask(deps)

        assert _requests(control)["primary"] == 3
        assert answer.attempts == ["openai/primary"] * 3 + ["openai/fallback"]
        assert _sample(deps, "ragstream_llm_retries_total", model="openai/primary") == 2

    async def test_context_window_overflow_takes_the_context_window_fallback(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """A prompt too long for the primary goes to its context-window fallback, not the other."""
        _set(control, "small", mode="overflow")
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "small", server)
            + _deployment("backup", "fallback", server)
            + _deployment("large", "large", server)
            + "router_settings:\n  num_retries: 0\n  fallbacks: [{answerer: [backup]}]\n"
            + "  context_window_fallbacks: [{answerer: [large]}]\n",
        )

        answer = await _ask(deps)

        assert answer.model == "openai/large"
        assert answer.attempts == ["openai/small", "openai/large"]
        assert "fallback" not in _requests(control)

    async def test_request_budget_cuts_a_stalled_call_and_forgets_it(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """A call outlasting the whole request budget ends in an error answer, nothing tracked."""
        _set(control, "primary", mode="stall", stall_s=10)
        deps = _deps(
            tmp_path,
            "model_list:\n" + _deployment("answerer", "primary", server),
            request_timeout_s=0.5,
        )

        answer = await _ask(deps)

        assert answer.error == "generation failed: TimeoutError"
        assert register_attempt_recorder().failures == {}

    async def test_failing_deployment_cools_down(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """Once a deployment of a group fails past allowed_fails, its sibling takes the traffic."""
        _set(control, "flaky", mode="fail", status=500)
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("answerer", "flaky", server)
            + _deployment("answerer", "steady", server)
            + "router_settings:\n  num_retries: 1\n  retry_after: 0\n"
            + "  allowed_fails: 1\n  cooldown_time: 60\n",
        )

        # The router picks a deployment at random: uncooled, flaky would see about half of the
        # 12 questions (and their retries); cooled after its second failure, at most two requests.
        answers = [await _ask(deps) for _ in range(12)]

        assert _requests(control).get("flaky", 0) <= 2
        assert sum(answer.model == "openai/steady" for answer in answers) >= 11


class TestCascade:
    async def test_ungrounded_cheap_tier_escalates_to_the_strong_tier(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """An unsupported cheap answer goes up to the strong tier, whose answer scores higher."""
        _set(control, "cheap", mode="ungrounded")
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("cheap", "cheap", server)
            + _deployment("strong", "strong", server)
            + LOCAL
            + "router_settings:\n  num_retries: 0\n"
            + "ragstream:\n  cascade: {tiers: [cheap, strong, local], min_groundedness: 0.6}\n",
        )

        answer = await _ask(deps)

        assert answer.attempts == ["openai/cheap", "openai/strong"]
        assert answer.model == "openai/strong"
        assert answer.groundedness == 1.0
        assert answer.citations[0].supported is True
        assert _sample(deps, "ragstream_llm_fallbacks_total", kind="escalation") == 1
        assert _requests(control) == {"cheap": 1, "strong": 1}

    async def test_priced_deployments_report_tokens_and_cost(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """Usage sums both tiers' tokens and prices them at the YAML's per-token costs."""
        _set(control, "cheap", mode="ungrounded")
        price = {"input_cost_per_token": 1.0e-6, "output_cost_per_token": 2.0e-6}
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("cheap", "cheap", server, **price)
            + _deployment("strong", "strong", server, **price)
            + "router_settings:\n  num_retries: 0\n"
            + "ragstream:\n  cascade: {tiers: [cheap, strong], min_groundedness: 0.6}\n",
        )

        answer = await _ask(deps)

        assert answer.usage is not None
        prompt_words = sum(len(m["content"].split()) for m in build_messages(QUESTION, CHUNKS))
        completion_words = len(UNGROUNDED_ANSWER.split()) + len(answer.answer.split())
        assert answer.usage.prompt_tokens == 2 * prompt_words
        assert answer.usage.completion_tokens == completion_words
        expected = 2 * prompt_words * 1.0e-6 + completion_words * 2.0e-6
        assert answer.usage.cost_usd == pytest.approx(expected)
        cost = _sample(deps, "ragstream_llm_cost_usd_total", tenant="acme", model="openai/strong")
        assert cost is not None
        assert cost > 0

    async def test_unanswerable_question_never_reaches_a_model(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """With no chunk relevant enough, the does-not-know answer comes without any request."""
        deps = _deps(
            tmp_path,
            "model_list:\n" + _deployment("answerer", "primary", server),
            min_relevance=0.9,
        )

        answer = await _ask(deps)

        assert answer.answer == NO_CONTEXT_ANSWER
        assert answer.model == NO_MODEL
        assert _requests(control) == {}


class TestE2EConfig:
    def test_shipped_e2e_config_declares_the_three_tier_cascade(self) -> None:
        """The packaged e2e YAML climbs cheap, strong, then the local model."""
        config = load_router_config(E2E_CONFIG)

        assert config.cascade is not None
        assert config.cascade.tiers == ("cheap", "strong", "local")
        assert config.cascade.min_groundedness == 0.6

    async def test_shipped_e2e_config_answers_through_the_fake_server(
        self, server: RunningServer, control: httpx.Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the cheap tier ungrounded, the e2e config escalates to a strong deployment."""
        monkeypatch.setenv("FAKELLM_API_BASE", server.api_base)
        _set(control, "cheap", mode="ungrounded")
        settings = GeneratorSettings(router_config=E2E_CONFIG, warm_up=False)
        metrics = ServiceMetrics("generator")
        deps = Dependencies(
            settings=settings,
            metrics=metrics,
            broker=create_broker(settings, metrics),
            llm_port=build_answer_model(settings),
        )

        answer = await _ask(deps)

        assert answer.attempts[0] == "openai/cheap"
        assert answer.model in {"openai/strong-a", "openai/strong-b"}
        assert answer.usage is not None
        assert answer.usage.cost_usd > 0


class OverBudget:
    """A SpendStore under which every tenant has already spent a dollar today."""

    async def spent(self, tenant: str, day: str) -> float:
        return 1.0

    async def add(self, tenant: str, day: str, usd: float) -> None:
        return None


class TestBudget:
    async def test_over_budget_tenant_never_reaches_the_paid_tiers(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """Past its budget a tenant is answered by the local model; the server sees no request."""
        deps = _deps(
            tmp_path,
            "model_list:\n"
            + _deployment("cheap", "cheap", server, input_cost_per_token=1e-6)
            + _deployment("strong", "strong", server, input_cost_per_token=1e-5)
            + LOCAL
            + "ragstream:\n  cascade:\n    tiers: [cheap, strong, local]\n",
            redis_url=CLOSED_REDIS_URL,
            tenant_budget_usd_per_day=1.0,
        )
        deps.spend_store = OverBudget()

        answer = await _ask(deps)

        assert answer.model == LOCAL_MODEL
        assert answer.attempts == [LOCAL_MODEL]
        assert answer.error is None
        assert _requests(control) == {}
        assert _sample(deps, "ragstream_budget_degraded_total", tenant="acme") == 1


# Nothing listens on port 1: every Redis call is refused at once.
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"


class TestCallCacheWithoutRedis:
    async def test_unreachable_redis_never_fails_an_answer(
        self, server: RunningServer, control: httpx.Client, tmp_path: Path
    ) -> None:
        """With LiteLLM's call cache on a Redis that refuses connections, the remote tier answers."""
        deps = _deps(
            tmp_path,
            "model_list:\n" + _deployment("answerer", "primary", server),
            redis_url=CLOSED_REDIS_URL,
        )

        answer = await _ask(deps, tenant=f"down-{uuid.uuid4().hex[:8]}")

        assert answer.model == "openai/primary"
        assert answer.error is None
        assert answer.cached is False
        assert _requests(control) == {"primary": 1}
