"""The local extractive answerer, registered with LiteLLM as the custom provider ``ragstream``.

A deployment with ``model: ragstream/extractive`` in the router configuration is answered here,
through LiteLLM's own call path (routing, retries, fallbacks, response objects and usage), so the
local model is a tier like any hosted one: the zero-cost default here, the last fallback in
production. The answer itself comes from ``ragstream_generator.extractive``; this module only
adapts it to LiteLLM's ``CustomLLM`` interface.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from litellm import CustomLLM, ModelResponse
from litellm.types.utils import Choices, GenericStreamingChunk, Usage

from ragstream_generator.domain import parse_messages, word_count
from ragstream_generator.extractive import extractive_answer

__all__ = ["LOCAL_MODEL", "PROVIDER", "ExtractiveLLM", "answer_messages", "word_pieces"]

PROVIDER = "ragstream"
LOCAL_MODEL = f"{PROVIDER}/extractive"


# A word with the whitespace after it: the pieces concatenate back to the exact answer.
_WORD_PIECE = re.compile(r"\s*\S+\s*")


def word_pieces(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces whose concatenation is ``text`` itself.

    Args:
        text: The answer to stream.
    """
    return _WORD_PIECE.findall(text) or ([text] if text else [])


def answer_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[str, int, int]:
    """Answer chat ``messages`` written by ``domain.build_messages``.

    Args:
        messages: The chat messages LiteLLM was asked to complete.

    Returns:
        The answer, and the prompt's and the answer's sizes in words (our token estimate).
    """
    prompt = parse_messages(messages)
    text = extractive_answer(prompt.question, prompt.passages)
    prompt_words = sum(
        word_count(content)
        for message in messages
        if isinstance(content := message.get("content"), str)
    )
    return text, prompt_words, word_count(text)


class ExtractiveLLM(CustomLLM):
    """LiteLLM's handler for ``ragstream/*`` models: deterministic, offline, a few milliseconds."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        """Answer ``messages`` synchronously (``litellm.completion``, ``Router.completion``)."""
        return _fill(kwargs.get("model_response"), model, *answer_messages(messages))

    async def acompletion(
        self, model: str, messages: list, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        """Answer ``messages`` off the event loop (``litellm.acompletion``, ``Router.acompletion``)."""
        # Scoring is pure Python over up to tens of passages: milliseconds, but CPU all the same,
        # and the consumer's heartbeats and the HTTP probes share this loop.
        answer = await asyncio.to_thread(answer_messages, messages)
        return _fill(kwargs.get("model_response"), model, *answer)

    async def astreaming(  # type: ignore[override]  # LiteLLM passes its many arguments by keyword
        self, model: str, messages: list, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        """Stream the answer to ``messages`` in word-sized pieces (``Router.acompletion(stream=True)``).

        The answer is computed whole (extractive: it is ready in milliseconds), then streamed
        so that the local tier speaks the same protocol as a hosted model; the last piece
        carries the usage, as hosted providers do with ``include_usage``.
        """
        text, prompt_words, answer_words = await asyncio.to_thread(answer_messages, messages)
        pieces = word_pieces(text)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            yield GenericStreamingChunk(
                text=piece,
                is_finished=last,
                finish_reason="stop" if last else "",
                usage={
                    "prompt_tokens": prompt_words,
                    "completion_tokens": answer_words,
                    "total_tokens": prompt_words + answer_words,
                }
                if last
                else None,
                index=0,
                tool_use=None,
            )


def _fill(
    response: ModelResponse | None, model: str, text: str, prompt_words: int, answer_words: int
) -> ModelResponse:
    # LiteLLM hands us the response object it will return (with its id and timing); fill it in.
    response = response if response is not None else ModelResponse()
    response.choices = [
        Choices(index=0, finish_reason="stop", message={"role": "assistant", "content": text})
    ]
    response.model = model
    response.usage = Usage(  # type: ignore[attr-defined]  # ModelResponse declares usage dynamically
        prompt_tokens=prompt_words,
        completion_tokens=answer_words,
        total_tokens=prompt_words + answer_words,
    )
    return response
