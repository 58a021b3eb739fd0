"""What the handlers need from the outside world: a model that completes a chat."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AnswerModel", "Cascade", "Completion", "ModelCallError", "StreamingAnswerModel"]


@dataclass(frozen=True)
class Completion:
    """A model's reply, with the deployment that wrote it and what it cost.

    Args:
        text: The reply.
        model: The deployment that answered, as the router names it (``ragstream/extractive``,
            ``openai/gpt-4o-mini``); after a fallback, the fallback's name.
        prompt_tokens: Tokens the prompt cost, as the provider reports them.
        completion_tokens: Tokens the reply cost.
        cost_usd: What the call cost, by LiteLLM's price map or the deployment's own prices.
        attempts: Every deployment call the router made for this reply, in order: a retry
            repeats a name, a fallback changes it; the answering deployment is last.
        cached: LiteLLM's call cache served the reply (no provider was called; it cost nothing).
    """

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    attempts: tuple[str, ...] = ()
    cached: bool = False


class ModelCallError(RuntimeError):
    """Every deployment of a model group failed, after the router's retries and fallbacks.

    Args:
        message: What went wrong.
        attempts: The deployment calls the router made, in order.
        error_type: The underlying error's type name.
    """

    def __init__(self, message: str, *, attempts: Sequence[str] = (), error_type: str = "") -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)
        self.error_type = error_type or type(self).__name__


@dataclass(frozen=True)
class Cascade:
    """The tiers a question climbs: each a model group, cheapest first, the local model last.

    Args:
        tiers: Model groups in the order they are asked.
        min_groundedness: An answer scoring below this escalates to the next tier (the last
            tier's answer is kept whatever it scores).
    """

    tiers: tuple[str, ...]
    min_groundedness: float = 0.0


class AnswerModel(Protocol):
    """The LLM behind the router: retries, fallbacks and timeouts are its business."""

    @property
    def cascade(self) -> Cascade:
        """The tiers to climb and the escalation threshold."""
        ...

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        """Return the reply of ``model_group`` (the first tier when None) to ``messages``.

        ``tenant`` scopes any cache the model keeps; without it, the reply is neither served
        from a cache nor stored in one.

        Raises:
            ModelCallError: When every deployment of the group failed.
        """
        ...


class StreamingAnswerModel(AnswerModel, Protocol):
    """An answering model that can also stream its reply, piece by piece."""

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str,
        on_delta: Callable[[str], Awaitable[None]],
    ) -> Completion:
        """Return the reply of ``model_group``, awaiting ``on_delta`` with each non-empty piece.

        Raises:
            ModelCallError: When the group failed, before or after its first piece.
        """
        ...
