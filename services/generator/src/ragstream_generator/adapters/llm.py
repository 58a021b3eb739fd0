"""The answering model behind a LiteLLM Router built from a YAML file: the only module importing litellm.

The YAML holds LiteLLM's own vocabulary, so anything LiteLLM documents for its Router works here:
``model_list`` (deployments: ``model_name`` is the group, ``litellm_params`` the provider call,
``os.environ/NAME`` for secrets) and ``router_settings`` (``num_retries``, ``timeout`` per attempt,
``fallbacks``, ``context_window_fallbacks``, ``allowed_fails``, ``cooldown_time``, ...). One
section is ours: ``ragstream.cascade`` (``tiers``: model groups asked cheapest first,
``min_groundedness``: the escalation rule), run by ``cascade.py``; without it the one tier is
``GeneratorSettings.model_group``. Which deployment of a group answers is the router's decision;
every completion records it, the deployments that failed before it (through a LiteLLM callback),
its tokens and its cost.

With a Redis URL, LiteLLM's own cache (``litellm.Cache(type="redis")``, the router's
``cache_responses``) is the exact cache of model calls, shared by every replica: a call repeating
an earlier one of the same tenant (same deployment, same messages) is answered from Redis without
reaching the provider. It is opt-in per call (``CacheMode.default_off``): only calls that name a
tenant use it, each under the tenant's own namespace, so tenants never share an entry and the
warm-up and streamed calls never touch it. A Redis that fails is LiteLLM's to swallow: the call
goes to the provider as if nothing were cached.

Importing this module imports LiteLLM, which takes seconds: the app imports it in its lifespan,
from a thread, never at import time.
"""

from __future__ import annotations

import os

# LiteLLM fetches its model price map from GitHub when it is imported unless told to use the copy
# it ships; offline that costs ~20 s of retries at every start. This must precede the import, and
# is the one environment variable this codebase sets.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import logging
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import litellm
import yaml
from litellm.caching.caching import Cache, CacheMode
from litellm.integrations.custom_logger import CustomLogger
from litellm.types.caching import LiteLLMCacheType

from ragstream_common.logging import get_logger
from ragstream_generator.adapters.local_model import (
    LOCAL_MODEL,
    PROVIDER,
    ExtractiveLLM,
)
from ragstream_generator.ports import Cascade, Completion, ModelCallError
from ragstream_generator.settings import GeneratorSettings

__all__ = [
    "AttemptRecorder",
    "EmptyCompletionError",
    "RouterAnswerModel",
    "RouterConfig",
    "RouterConfigError",
    "build_answer_model",
    "call_cache_control",
    "configure_call_cache",
    "load_router_config",
    "make_litellm_router",
    "register_attempt_recorder",
    "register_local_model",
]

_log = get_logger(__name__)

# Older LiteLLM releases phone home unless this flag is off; this one keeps telemetry in its proxy
# (consent-gated) and ignores the attribute, so setting it is harmless either way. Its "give
# feedback" banners on errors would only clutter our JSON logs.
litellm.telemetry = False
litellm.suppress_debug_info = True
# LiteLLM builds pydantic schemas for its TypedDicts lazily, at the first calls, and pydantic warns
# once per ReadOnly item: a dozen lines of stderr that say nothing about this service.
warnings.filterwarnings("ignore", message=r".*using the `ReadOnly` qualifier", category=UserWarning)

# LiteLLM gives its loggers a plain-text handler of its own at import: route them through the
# process's JSON logging instead, and keep only warnings and errors (it logs every call at INFO;
# our own "answered" line already names the deployment).
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    _litellm_logger = logging.getLogger(_name)
    _litellm_logger.handlers.clear()
    _litellm_logger.propagate = True
    _litellm_logger.setLevel(logging.WARNING)

_CONFIG_KEYS = frozenset({"model_list", "router_settings", "ragstream"})
_CASCADE_KEYS = frozenset({"tiers", "min_groundedness"})
# The metadata key that ties LiteLLM's failure callbacks to the call that caused them.
_CALL_ID_KEY = "ragstream_call_id"
# Prefix of LiteLLM's cache keys in the shared Redis; each tenant's calls add its own suffix.
_CALL_CACHE_NAMESPACE = "ragstream:llm"


class RouterConfigError(ValueError):
    """The router configuration file is missing something the router needs."""


class EmptyCompletionError(RuntimeError):
    """The model answered with no text at all."""


@dataclass(frozen=True)
class RouterConfig:
    """A LiteLLM Router configuration, as read from YAML.

    Args:
        model_list: The deployments, in LiteLLM's ``model_list`` format.
        router_settings: Keyword arguments of ``litellm.Router`` (retries, timeout, fallbacks, ...).
    """

    model_list: list[dict[str, Any]]
    router_settings: dict[str, Any] = field(default_factory=dict)
    cascade: Cascade | None = None

    @property
    def model_groups(self) -> set[str]:
        """The model groups the deployments form."""
        return {deployment["model_name"] for deployment in self.model_list}


def load_router_config(path: Path) -> RouterConfig:
    """Read and check a router configuration, failing with the file's name on any mistake.

    Args:
        path: A YAML file with ``model_list`` and optionally ``router_settings``.
    """
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise RouterConfigError(f"{path}: expected a mapping with model_list")
    # A misspelt section would otherwise be ignored and its settings silently lost.
    if unknown := set(raw) - _CONFIG_KEYS:
        raise RouterConfigError(f"{path}: unknown sections {sorted(unknown)}")
    model_list = raw.get("model_list")
    if not isinstance(model_list, list) or not model_list:
        raise RouterConfigError(f"{path}: model_list must be a non-empty list")
    for index, deployment in enumerate(model_list):
        params = deployment.get("litellm_params") if isinstance(deployment, dict) else None
        if (
            not isinstance(deployment, dict)
            or not isinstance(deployment.get("model_name"), str)
            or not isinstance(params, dict)
            or not isinstance(params.get("model"), str)
        ):
            raise RouterConfigError(
                f"{path}: model_list[{index}] needs model_name and litellm_params.model"
            )
    router_settings = raw.get("router_settings") or {}
    if not isinstance(router_settings, dict):
        raise RouterConfigError(f"{path}: router_settings must be a mapping")
    return RouterConfig(
        model_list=model_list,
        router_settings=router_settings,
        cascade=_read_cascade(path, raw.get("ragstream") or {}),
    )


def _read_cascade(path: Path, section: object) -> Cascade | None:
    # Our own section: ``ragstream: {cascade: {tiers: [...], min_groundedness: 0.6}}``.
    if not isinstance(section, dict) or set(section) - {"cascade"}:
        raise RouterConfigError(f"{path}: the ragstream section holds only `cascade`")
    cascade = section.get("cascade")
    if cascade is None:
        return None
    if not isinstance(cascade, dict) or set(cascade) - _CASCADE_KEYS:
        raise RouterConfigError(f"{path}: ragstream.cascade takes {sorted(_CASCADE_KEYS)}")
    tiers = cascade.get("tiers")
    if not isinstance(tiers, list) or not tiers or not all(isinstance(t, str) for t in tiers):
        raise RouterConfigError(f"{path}: ragstream.cascade.tiers must list model groups")
    threshold = cascade.get("min_groundedness", 0.0)
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise RouterConfigError(f"{path}: ragstream.cascade.min_groundedness must be in [0, 1]")
    return Cascade(tiers=tuple(tiers), min_groundedness=float(threshold))


class AttemptRecorder(CustomLogger):
    """Records, per call, the deployments whose attempts failed (retries and fallbacks).

    LiteLLM reports every failed attempt to its callbacks with the call's metadata, which
    carries our call id; the answering deployment is read from the response itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, list[str]] = {}

    def _record(self, kwargs: dict[str, Any]) -> None:
        params = kwargs.get("litellm_params") or {}
        call_id = (params.get("metadata") or {}).get(_CALL_ID_KEY)
        if call_id is None or call_id not in self.failures:
            return
        provider, model = kwargs.get("custom_llm_provider"), kwargs.get("model")
        self.failures[call_id].append(f"{provider}/{model}" if provider else str(model))

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Note one failed attempt of a call we track."""
        self._record(kwargs)

    def start(self) -> str:
        """Begin tracking a call; pass the returned id in its metadata."""
        call_id = uuid.uuid4().hex
        self.failures[call_id] = []
        return call_id

    async def finish(self, call_id: str) -> list[str]:
        """Stop tracking a call and return its failed attempts, in order."""
        # LiteLLM schedules its failure callbacks as tasks: let any still pending run first.
        await asyncio.sleep(0)
        return self.failures.pop(call_id, [])

    def discard(self, call_id: str) -> None:
        """Stop tracking a call, if it still is."""
        self.failures.pop(call_id, None)


_RECORDER = AttemptRecorder()


def register_attempt_recorder() -> AttemptRecorder:
    """Add the process's one attempt recorder to LiteLLM's callbacks (idempotent)."""
    if _RECORDER not in litellm.callbacks:
        litellm.callbacks.append(_RECORDER)
    return _RECORDER


def register_local_model() -> None:
    """Make ``ragstream/*`` models resolve to the local extractive answerer (idempotent)."""
    others = [item for item in litellm.custom_provider_map if item.get("provider") != PROVIDER]
    litellm.custom_provider_map = [
        *others,
        {"provider": PROVIDER, "custom_handler": ExtractiveLLM()},
    ]


def configure_call_cache(settings: GeneratorSettings) -> Cache | None:
    """Set LiteLLM's process-wide cache to the shared Redis, or to none without a Redis URL.

    No connection is made here; a Redis that is down only makes every call a miss.

    Args:
        settings: The Redis URL, the entries' lifetime and the calls' timeout.
    """
    if settings.redis_url is None:
        litellm.cache = None
        return None
    url = urlsplit(settings.redis_url)
    db = url.path.lstrip("/")
    # Passed through to the Redis client: a slow Redis must cost a call milliseconds, not seconds.
    client_options: dict[str, Any] = {
        "socket_timeout": settings.answer_cache_timeout_s,
        "socket_connect_timeout": settings.answer_cache_timeout_s,
    }
    if db:
        client_options["db"] = int(db)
    cache = Cache(
        type=LiteLLMCacheType.REDIS,
        mode=CacheMode.default_off,  # only calls naming a tenant (call_cache_control) use it
        host=url.hostname or "localhost",
        port=str(url.port or 6379),
        password=url.password,
        namespace=_CALL_CACHE_NAMESPACE,
        ttl=settings.llm_cache_ttl_s,
        supported_call_types=["acompletion"],
        **client_options,
    )
    litellm.cache = cache
    return cache


def call_cache_control(tenant: str | None) -> dict[str, Any]:
    """Return the per-call ``cache`` controls: the tenant's namespace, or no caching at all.

    Args:
        tenant: The asking tenant; None for calls that must neither read nor write the cache.
    """
    if tenant is None:
        return {"no-cache": True, "no-store": True}
    return {"use-cache": True, "namespace": f"{_CALL_CACHE_NAMESPACE}:{quote(tenant, safe='')}"}


def make_litellm_router(config: RouterConfig, *, cache_responses: bool = False) -> litellm.Router:
    """Build a ``litellm.Router`` from ``config``, with the local model registered.

    Construction validates the configuration (unknown settings, malformed fallbacks) but calls
    no provider.

    Args:
        config: The deployments and router settings.
        cache_responses: Let calls use ``litellm.cache`` (set it first: see configure_call_cache).
    """
    register_local_model()
    settings = dict(config.router_settings)
    if cache_responses:
        settings["cache_responses"] = True
    return litellm.Router(model_list=config.model_list, **settings)


class RouterAnswerModel:
    """The ``AnswerModel`` port over a LiteLLM Router and one of its model groups.

    Args:
        router: The router.
        model_group: The ``model_name`` every question is asked of.
    """

    def __init__(
        self, router: litellm.Router, model_group: str, cascade: Cascade | None = None
    ) -> None:
        self.router = router
        self.model_group = model_group
        self._cascade = cascade or Cascade(tiers=(model_group,))
        self._recorder = register_attempt_recorder()

    @property
    def cascade(self) -> Cascade:
        """The tiers to climb (the configured cascade, or the one model group)."""
        return self._cascade

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        """Ask a model group; the router retries, times out and falls back as configured.

        Args:
            messages: The chat messages.
            model_group: The group to ask; the first cascade tier when None.
            tenant: The asking tenant: the call goes through LiteLLM's cache under its namespace
                (when a cache is configured); None: the call bypasses the cache.

        Raises:
            ModelCallError: Every deployment and fallback failed, or one answered with nothing.
        """
        call_id = self._recorder.start()
        try:
            response = await self.router.acompletion(
                model=model_group or self._cascade.tiers[0],
                messages=[dict(message) for message in messages],  # type: ignore[misc]  # plain chat dicts are what AllMessageValues describes
                metadata={_CALL_ID_KEY: call_id},
                cache=call_cache_control(tenant),
            )
            failed = await self._recorder.finish(call_id)
        except Exception as error:
            failed = await self._recorder.finish(call_id)
            raise ModelCallError(
                f"{model_group}: {type(error).__name__}: {error}",
                attempts=failed,
                error_type=type(error).__name__,
            ) from error
        finally:
            # A call cancelled by the request budget never reaches finish(): forget it anyway.
            self._recorder.discard(call_id)
        model = _deployment_name(response)
        text = _response_text(response)
        if not text.strip():
            raise ModelCallError(
                f"{model} returned no text",
                attempts=[*failed, model],
                error_type=EmptyCompletionError.__name__,
            )
        if _cache_hit(response):
            # Served from LiteLLM's cache: no provider call, so no tokens spent and no cost. A hit
            # names the model without its provider; the deployment's id gives its full name.
            model = self._cached_deployment_name(response) or model
            return Completion(text=text, model=model, attempts=(*failed, model), cached=True)
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            model=model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=_cost(response),
            attempts=(*failed, model),
        )

    def _cached_deployment_name(self, response: Any) -> str | None:
        hidden = getattr(response, "_hidden_params", None) or {}
        model_id = hidden.get("model_id")
        deployment = self.router.registry().deployment(str(model_id)) if model_id else None
        return str(deployment.litellm_params.model) if deployment is not None else None

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str,
        on_delta: Callable[[str], Awaitable[None]],
    ) -> Completion:
        """Ask a model group for a streamed reply, handing each non-empty piece to ``on_delta``.

        The router retries and falls back while it opens the stream (before the first piece);
        once pieces flow, a failure ends the call: they cannot be taken back.

        Args:
            messages: The chat messages.
            model_group: The group to ask.
            on_delta: Awaited with each non-empty piece of text, in order.

        Raises:
            ModelCallError: Every deployment failed, the stream broke, or it carried no text.
        """
        call_id = self._recorder.start()
        pieces: list[str] = []
        usage: Any = None
        try:
            chunks = await self.router.acompletion(
                model=model_group,
                messages=[dict(message) for message in messages],  # type: ignore[misc]  # plain chat dicts are what AllMessageValues describes
                metadata={_CALL_ID_KEY: call_id},
                stream=True,
                stream_options={"include_usage": True},
                # Streams bypass the call cache: a replayed stream would need its own accounting.
                cache=call_cache_control(None),
            )
            async for chunk in chunks:  # type: ignore[union-attr]  # stream=True returns a stream
                usage = getattr(chunk, "usage", None) or usage
                choices = getattr(chunk, "choices", None) or []
                delta = getattr(choices[0], "delta", None) if choices else None
                text = getattr(delta, "content", None)
                if isinstance(text, str) and text:
                    pieces.append(text)
                    await on_delta(text)
            failed = await self._recorder.finish(call_id)
        except Exception as error:
            failed = await self._recorder.finish(call_id)
            raise ModelCallError(
                f"{model_group}: {type(error).__name__}: {error}",
                attempts=failed,
                error_type=type(error).__name__,
            ) from error
        finally:
            self._recorder.discard(call_id)
        model = _deployment_name(chunks)
        text = "".join(pieces)
        if not text.strip():
            raise ModelCallError(
                f"{model} streamed no text",
                attempts=[*failed, model],
                error_type=EmptyCompletionError.__name__,
            )
        return Completion(
            text=text,
            model=model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=_cost(chunks),
            attempts=(*failed, model),
        )

    async def warm_up(self) -> None:
        """Make one call to the local model, outside the router, to load LiteLLM's lazy modules.

        The first completion in a process costs about half a second of imports; paying it at
        startup keeps it off the first query. Going around the router means no hosted provider
        is ever called (or billed) for it.
        """
        await litellm.acompletion(
            model=LOCAL_MODEL,
            messages=[{"role": "user", "content": "warm up"}],
            cache=call_cache_control(None),
        )

    async def aclose(self) -> None:
        """Close the HTTP clients LiteLLM cached for hosted providers."""
        await litellm.close_litellm_async_clients()


def build_answer_model(settings: GeneratorSettings) -> RouterAnswerModel:
    """Build the answering model from the settings' router configuration (blocking: file I/O).

    Args:
        settings: Where the router configuration is and which model group to ask.
    """
    config = load_router_config(settings.router_config)
    # With a cascade its tiers are the groups asked; without one, the settings' model group is.
    if config.cascade is None and settings.model_group not in config.model_groups:
        raise RouterConfigError(
            f"{settings.router_config}: no deployment serves model group "
            f"{settings.model_group!r} (groups: {sorted(config.model_groups)})"
        )
    call_cache = configure_call_cache(settings)
    router = make_litellm_router(config, cache_responses=call_cache is not None)
    _log.info(
        "llm_router_built",
        config=str(settings.router_config),
        model_group=settings.model_group,
        deployments=[d["litellm_params"]["model"] for d in config.model_list],
        call_cache=call_cache is not None,
    )
    cascade = config.cascade or Cascade(tiers=(settings.model_group,))
    if missing := [tier for tier in cascade.tiers if tier not in config.model_groups]:
        raise RouterConfigError(
            f"{settings.router_config}: cascade tiers {missing} are not model groups"
        )
    return RouterAnswerModel(router, settings.model_group, cascade)


def _cost(response: Any) -> float:
    # The router prices each response with litellm.completion_cost, using the deployment's own
    # input/output_cost_per_token when the YAML sets them (which the bare function, given only the
    # response, does not know about). Models with no price, like the local one, cost 0.
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # an unpriced model: LiteLLM raises rather than answering 0
            cost = 0.0
    return float(cost or 0.0)


def _cache_hit(response: Any) -> bool:
    hidden = getattr(response, "_hidden_params", None) or {}
    return bool(hidden.get("cache_hit"))


def _response_text(response: Any) -> str:
    choice = response.choices[0]
    content = getattr(getattr(choice, "message", None), "content", None)
    return content if isinstance(content, str) else ""


def _deployment_name(response: Any) -> str:
    # The deployment's own model string ("openai/gpt-4o-mini", "ragstream/extractive") names what
    # answered, stably across restarts, unlike the router's hashed deployment ids.
    hidden = getattr(response, "_hidden_params", None) or {}
    if name := hidden.get("litellm_model_name"):
        return str(name)
    provider, model = hidden.get("custom_llm_provider"), getattr(response, "model", None)
    if provider and model:
        return f"{provider}/{model}"
    return str(model or "unknown")
