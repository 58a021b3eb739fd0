"""The answering model behind a LiteLLM Router built from a YAML file: the only module importing litellm.

The YAML holds LiteLLM's own vocabulary, so anything LiteLLM documents for its Router works here:
``model_list`` (deployments: ``model_name`` is the group, ``litellm_params`` the provider call,
``os.environ/NAME`` for secrets) and ``router_settings`` (``num_retries``, ``timeout`` per attempt,
``fallbacks``, ``cooldown_time``, ``routing_strategy``, ...). The generator asks one model group
(``GeneratorSettings.model_group``); which deployment answers is the router's decision, and the
answer records it.

Importing this module imports LiteLLM, which takes seconds: the app imports it in its lifespan,
from a thread, never at import time.
"""

from __future__ import annotations

import os

# LiteLLM fetches its model price map from GitHub when it is imported unless told to use the copy
# it ships; offline that costs ~20 s of retries at every start. This must precede the import, and
# is the one environment variable this codebase sets.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litellm
import yaml

from ragstream_common.logging import get_logger
from ragstream_generator.adapters.local_model import (
    LOCAL_MODEL,
    PROVIDER,
    ExtractiveLLM,
)
from ragstream_generator.ports import Completion
from ragstream_generator.settings import GeneratorSettings

__all__ = [
    "EmptyCompletionError",
    "RouterAnswerModel",
    "RouterConfig",
    "RouterConfigError",
    "build_answer_model",
    "load_router_config",
    "make_litellm_router",
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

_CONFIG_KEYS = frozenset({"model_list", "router_settings"})


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
    return RouterConfig(model_list=model_list, router_settings=router_settings)


def register_local_model() -> None:
    """Make ``ragstream/*`` models resolve to the local extractive answerer (idempotent)."""
    others = [item for item in litellm.custom_provider_map if item.get("provider") != PROVIDER]
    litellm.custom_provider_map = [
        *others,
        {"provider": PROVIDER, "custom_handler": ExtractiveLLM()},
    ]


def make_litellm_router(config: RouterConfig) -> litellm.Router:
    """Build a ``litellm.Router`` from ``config``, with the local model registered.

    Construction validates the configuration (unknown settings, malformed fallbacks) but calls
    no provider.

    Args:
        config: The deployments and router settings.
    """
    register_local_model()
    return litellm.Router(model_list=config.model_list, **config.router_settings)


class RouterAnswerModel:
    """The ``AnswerModel`` port over a LiteLLM Router and one of its model groups.

    Args:
        router: The router.
        model_group: The ``model_name`` every question is asked of.
    """

    def __init__(self, router: litellm.Router, model_group: str) -> None:
        self.router = router
        self.model_group = model_group

    async def complete(self, messages: Sequence[Mapping[str, str]]) -> Completion:
        """Ask the model group; the router retries, times out and falls back as configured.

        Raises:
            Exception: LiteLLM's error when every deployment and fallback failed, or
                EmptyCompletionError when one answered with nothing.
        """
        response = await self.router.acompletion(
            model=self.model_group,
            messages=[dict(message) for message in messages],  # type: ignore[misc]  # plain chat dicts are what AllMessageValues describes
        )
        text = _response_text(response)
        if not text.strip():
            raise EmptyCompletionError(f"{_deployment_name(response)} returned no text")
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            model=_deployment_name(response),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    async def warm_up(self) -> None:
        """Make one call to the local model, outside the router, to load LiteLLM's lazy modules.

        The first completion in a process costs about half a second of imports; paying it at
        startup keeps it off the first query. Going around the router means no hosted provider
        is ever called (or billed) for it.
        """
        await litellm.acompletion(
            model=LOCAL_MODEL, messages=[{"role": "user", "content": "warm up"}]
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
    if settings.model_group not in config.model_groups:
        raise RouterConfigError(
            f"{settings.router_config}: no deployment serves model group "
            f"{settings.model_group!r} (groups: {sorted(config.model_groups)})"
        )
    router = make_litellm_router(config)
    _log.info(
        "llm_router_built",
        config=str(settings.router_config),
        model_group=settings.model_group,
        deployments=[d["litellm_params"]["model"] for d in config.model_list],
    )
    return RouterAnswerModel(router, settings.model_group)


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
