"""Tests for the LiteLLM adapter: router configuration files, the model string, fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragstream_common.events import RetrievedChunk
from ragstream_generator.adapters.llm import (
    RouterConfigError,
    build_answer_model,
    call_cache_control,
    configure_call_cache,
    load_router_config,
    make_litellm_router,
)
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.domain import build_messages
from ragstream_generator.settings import GeneratorSettings, packaged_router_config

# LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

PRODUCTION_EXAMPLE = packaged_router_config().with_name("router.production.example.yaml")

CHUNK = RetrievedChunk(
    chunk_id="c1",
    doc_id="d1",
    title="Ports",
    text="The gateway listens on port 8000.",
    position=0,
    score=0.9,
)

# Port 1 on loopback refuses connections at once: a hosted provider that is down, without waiting.
UNREACHABLE_PRIMARY = """
model_list:
  - model_name: answerer
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:1/v1
      api_key: dummy
  - model_name: answerer-local
    litellm_params:
      model: ragstream/extractive
router_settings:
  num_retries: 0
  timeout: 5
{fallbacks}
"""


def _settings(tmp_path: Path, text: str, **overrides: object) -> GeneratorSettings:
    path = tmp_path / "router.yaml"
    path.write_text(text, encoding="utf-8")
    return GeneratorSettings(router_config=path, **overrides)  # type: ignore[arg-type]


class TestLoadRouterConfig:
    def test_packaged_config_serves_the_answerer_group_locally(self) -> None:
        """The shipped default routes the answerer group to the local extractive model."""
        config = load_router_config(packaged_router_config())

        assert config.model_groups == {"answerer"}
        assert [d["litellm_params"]["model"] for d in config.model_list] == [LOCAL_MODEL]

    def test_misspelt_section_is_refused(self, tmp_path: Path) -> None:
        """An unknown top-level section fails instead of silently dropping its settings."""
        path = tmp_path / "r.yaml"
        path.write_text(
            "model_list: [{model_name: a, litellm_params: {model: ragstream/extractive}}]\n"
            "router_setings: {num_retries: 3}\n"
        )

        with pytest.raises(RouterConfigError, match="router_setings"):
            load_router_config(path)

    @pytest.mark.parametrize(
        "text",
        [
            "model_list: []",
            "model_list: [{model_name: a}]",
            "model_list: [{model_name: a, litellm_params: {api_key: x}}]",
            "just a string",
        ],
    )
    def test_deployments_need_a_name_and_a_model(self, tmp_path: Path, text: str) -> None:
        """A config without deployments naming a group and a model is refused."""
        path = tmp_path / "r.yaml"
        path.write_text(text)

        with pytest.raises(RouterConfigError):
            load_router_config(path)


class TestProductionExample:
    def test_constructs_a_router_with_dummy_keys(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The production example is a valid LiteLLM Router configuration (nothing is called)."""
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SELF_HOSTED_LLM_API_KEY"):
            monkeypatch.setenv(name, f"dummy-{name.lower()}")
        config = load_router_config(PRODUCTION_EXAMPLE)

        router = make_litellm_router(config)

        assert set(router.registry().names()) == {
            "answerer",
            "answerer-selfhosted",
            "answerer-strong",
            "answerer-local",
        }
        assert config.cascade is not None
        assert config.cascade.tiers[-1] == "answerer-local"


class TestBuildAnswerModel:
    def test_unknown_model_group_fails_at_startup(self, tmp_path: Path) -> None:
        """Asking for a group no deployment serves fails when the router is built."""
        settings = _settings(
            tmp_path, UNREACHABLE_PRIMARY.format(fallbacks=""), model_group="nobody"
        )

        with pytest.raises(RouterConfigError, match="nobody"):
            build_answer_model(settings)

    def test_unknown_router_setting_fails_at_startup(self, tmp_path: Path) -> None:
        """A misspelt router setting stops the service instead of being ignored."""
        text = UNREACHABLE_PRIMARY.format(fallbacks="  num_retrys: 3")

        with pytest.raises(TypeError, match="num_retrys"):
            build_answer_model(_settings(tmp_path, text))


class TestFallbacks:
    async def test_unreachable_primary_falls_back_to_the_local_model(self, tmp_path: Path) -> None:
        """When the hosted deployment is down, the router's fallback answers and is named."""
        settings = _settings(
            tmp_path,
            UNREACHABLE_PRIMARY.format(fallbacks="  fallbacks: [{answerer: [answerer-local]}]"),
        )
        model = build_answer_model(settings)

        completion = await model.complete(
            build_messages("Which port does the gateway use?", [CHUNK])
        )

        assert completion.model == LOCAL_MODEL
        assert completion.text.endswith("[1]")

    async def test_failure_without_fallback_raises(self, tmp_path: Path) -> None:
        """With every deployment down, the error reaches the caller (which answers with it)."""
        model = build_answer_model(_settings(tmp_path, UNREACHABLE_PRIMARY.format(fallbacks="")))

        with pytest.raises(Exception) as raised:  # noqa: PT011 - LiteLLM's exception types vary by provider
            await model.complete(build_messages("Which port?", [CHUNK]))

        assert "Connection" in type(raised.value).__name__ or "connect" in str(raised.value).lower()


class TestCallCache:
    def test_tenant_calls_opt_in_under_their_own_namespace(self) -> None:
        """A tenant's call uses the cache under a namespace naming it, quoted; others bypass it."""
        assert call_cache_control("acme") == {"use-cache": True, "namespace": "ragstream:llm:acme"}
        assert call_cache_control("a:b")["namespace"] == "ragstream:llm:a%3Ab"
        assert call_cache_control(None) == {"no-cache": True, "no-store": True}

    def test_redis_url_sets_litellms_cache_and_none_clears_it(self, tmp_path: Path) -> None:
        """With a Redis URL LiteLLM gets an opt-in Redis cache; without one it has none."""
        import litellm
        from litellm.caching.caching import CacheMode
        from litellm.caching.redis_cache import RedisCache

        try:
            cache = configure_call_cache(
                GeneratorSettings(redis_url="redis://127.0.0.1:1/0", llm_cache_ttl_s=60)
            )
            assert cache is not None
            assert litellm.cache is cache
            assert isinstance(cache.cache, RedisCache)
            assert cache.mode == CacheMode.default_off
            assert cache.ttl == 60
        finally:
            assert configure_call_cache(GeneratorSettings()) is None
        assert litellm.cache is None
