"""What the handlers need from the outside world: a model that completes a chat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AnswerModel", "Completion"]


@dataclass(frozen=True)
class Completion:
    """A model's reply, with the deployment that wrote it and what it cost in tokens.

    Args:
        text: The reply.
        model: The deployment that answered, as the router names it (``ragstream/extractive``,
            ``openai/gpt-4o-mini``); after a fallback, the fallback's name.
        prompt_tokens: Tokens the prompt cost, as the provider reports them.
        completion_tokens: Tokens the reply cost.
    """

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AnswerModel(Protocol):
    """The LLM behind the router: retries, fallbacks and timeouts are its business."""

    async def complete(self, messages: Sequence[Mapping[str, str]]) -> Completion:
        """Return the reply to ``messages``; raise when every deployment has failed."""
        ...
