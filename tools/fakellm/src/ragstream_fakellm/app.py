"""The fake server: OpenAI's chat completions and model list, with per-model fault injection.

One server hosts any number of "deployments": the model name in the request picks the behaviour
set for it through the control API, so a test can make ``primary`` fail while ``fallback``
answers. Answers are deterministic. In ``ok`` mode the server quotes the first sentence of the
prompt's passage [1] followed by ``[1]`` (the ragstream prompt format: ``<passage n="1" ...>``),
so its answers are grounded in the retrieved text; ``ungrounded`` answers a fixed sentence that
no passage supports.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

__all__ = ["NO_PASSAGE_ANSWER", "UNGROUNDED_ANSWER", "Behaviour", "create_app", "grounded_answer"]

UNGROUNDED_ANSWER = "The moon is made of green cheese and orbits Saturn every Tuesday."
NO_PASSAGE_ANSWER = "I could not find the answer in the provided documents."

_PASSAGE_ONE_RE = re.compile(r'<passage n="1"[^>]*>\n(?P<text>.*?)\n</passage>', re.DOTALL)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")


class Behaviour(BaseModel):
    """How the server answers requests for one model.

    Args:
        mode: ``ok`` quotes passage [1]; ``fail`` returns ``status``; ``stall`` waits ``stall_s``
            seconds and then answers as ``ok``; ``ungrounded`` answers a sentence no passage holds;
            ``overflow`` refuses the prompt as longer than the model's context window (OpenAI's
            400 ``context_length_exceeded``).
        status: The HTTP status of a ``fail`` answer.
        stall_s: How long a ``stall`` lasts.
        answer: A fixed answer text, replacing the one the mode would give (``ok`` and ``stall``).
    """

    mode: Literal["ok", "fail", "stall", "ungrounded", "overflow"] = "ok"
    status: int = Field(default=500, ge=400, le=599)
    stall_s: float = Field(default=5.0, ge=0, le=600)
    answer: str | None = None


def grounded_answer(messages: list[dict[str, Any]]) -> str:
    """Return the first sentence of passage [1] of the last user message, cited as [1].

    Args:
        messages: The chat messages of the request.
    """
    user = [m.get("content") for m in messages if m.get("role") == "user"]
    content = user[-1] if user and isinstance(user[-1], str) else ""
    match = _PASSAGE_ONE_RE.search(content)
    if match is None:
        return NO_PASSAGE_ANSWER
    first = _SENTENCE_END_RE.split(match["text"].strip(), maxsplit=1)[0].strip()
    return f"{first} [1]" if first else NO_PASSAGE_ANSWER


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


def create_app() -> FastAPI:
    """Build the fake server; each app keeps its own behaviours and request counts."""
    app = FastAPI(title="ragstream fakellm")
    behaviours: dict[str, Behaviour] = {}
    requests: Counter[str] = Counter()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        names = sorted(set(behaviours) | set(requests))
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "owned_by": "fakellm"} for n in names],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        requests[model] += 1
        behaviour = behaviours.get(model, Behaviour())
        if behaviour.mode == "fail":
            return JSONResponse(
                status_code=behaviour.status,
                content={
                    "error": {
                        "message": f"fakellm: {model} told to fail",
                        "type": "server_error",
                        "code": str(behaviour.status),
                    }
                },
            )
        if behaviour.mode == "overflow":
            return JSONResponse(
                status_code=400,
                content={
                    "error": {
                        "message": (
                            "This model's maximum context length is 16 tokens. However, your "
                            f"messages resulted in {_words(messages)} tokens."
                        ),
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            )
        if behaviour.mode == "stall":
            await asyncio.sleep(behaviour.stall_s)
        if behaviour.mode == "ungrounded":
            text = UNGROUNDED_ANSWER
        else:
            text = behaviour.answer or grounded_answer(messages)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        usage = {
            "prompt_tokens": _words(messages),
            "completion_tokens": len(text.split()),
            "total_tokens": _words(messages) + len(text.split()),
        }
        if body.get("stream"):
            return StreamingResponse(
                _stream(completion_id, created, model, text, usage),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    @app.post("/control/reset")
    async def reset() -> dict[str, str]:
        behaviours.clear()
        requests.clear()
        return {"status": "reset"}

    @app.get("/control/stats")
    async def stats() -> dict[str, dict[str, int]]:
        return {"requests": dict(requests)}

    @app.post("/control/{model:path}")
    async def control(model: str, behaviour: Behaviour) -> dict[str, Any]:
        behaviours[model] = behaviour
        return {"model": model, **behaviour.model_dump()}

    return app


async def _stream(
    completion_id: str, created: int, model: str, text: str, usage: dict[str, int]
) -> AsyncIterator[str]:
    # Word by word, then a final chunk with the finish reason and usage, as OpenAI streams them.
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
    for index, word in enumerate(text.split(" ")):
        delta = {"role": "assistant", "content": word} if index == 0 else {"content": " " + word}
        chunk = {**base, "model": model, "choices": [{"index": 0, "delta": delta}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    final = {
        **base,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": usage,
    }
    yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"
