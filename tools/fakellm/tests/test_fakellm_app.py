"""Tests for the fake OpenAI-compatible server: answers, fault injection and the control API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from ragstream_fakellm import UNGROUNDED_ANSWER, create_app, run_in_thread
from ragstream_fakellm.app import NO_PASSAGE_ANSWER, grounded_answer

PROMPT = (
    "<question>\nWhich port?\n</question>\n\n"
    '<passage n="1" title="Ops">\nThe gateway listens on port 8000. Metrics every 15 s.\n</passage>\n'
    '<passage n="2" title="Other">\nSomething else.\n</passage>'
)
MESSAGES = [{"role": "system", "content": "Answer."}, {"role": "user", "content": PROMPT}]


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client to a fresh in-process app."""
    with TestClient(create_app()) as test_client:
        yield test_client


def _chat(client: TestClient, model: str, **extra: object) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **extra})


class TestGroundedAnswer:
    def test_quotes_the_first_sentence_of_passage_one(self) -> None:
        """The answer is passage [1]'s first sentence followed by its marker."""
        assert grounded_answer(MESSAGES) == "The gateway listens on port 8000. [1]"

    def test_without_passages_it_does_not_know(self) -> None:
        """A prompt with no passage gets the does-not-know sentence."""
        assert grounded_answer([{"role": "user", "content": "hi"}]) == NO_PASSAGE_ANSWER


class TestChatCompletions:
    def test_ok_mode_answers_in_openai_shape_with_usage(self, client: TestClient) -> None:
        """A request is answered as an OpenAI chat completion, with word-count usage."""
        body = _chat(client, "primary").json()

        assert body["object"] == "chat.completion"
        assert body["model"] == "primary"
        assert body["choices"][0]["message"]["content"] == "The gateway listens on port 8000. [1]"
        assert body["usage"]["completion_tokens"] == 7

    def test_fail_mode_returns_the_status_asked_for(self, client: TestClient) -> None:
        """A model told to fail answers with its status and an OpenAI error body."""
        client.post("/control/primary", json={"mode": "fail", "status": 503})

        response = _chat(client, "primary")

        assert response.status_code == 503
        assert "error" in response.json()
        assert _chat(client, "other").status_code == 200

    def test_ungrounded_mode_answers_without_support(self, client: TestClient) -> None:
        """An ungrounded model answers the fixed sentence no passage holds."""
        client.post("/control/cheap", json={"mode": "ungrounded"})

        assert _chat(client, "cheap").json()["choices"][0]["message"]["content"] == (
            UNGROUNDED_ANSWER
        )

    def test_overflow_mode_refuses_the_prompt_as_too_long(self, client: TestClient) -> None:
        """An overflowing model answers OpenAI's 400 context_length_exceeded error."""
        client.post("/control/small", json={"mode": "overflow"})

        response = _chat(client, "small")

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"

    def test_fixed_answer_replaces_the_quote(self, client: TestClient) -> None:
        """An answer given through the control API is returned verbatim."""
        client.post("/control/m", json={"mode": "ok", "answer": "Forty-two [2]."})

        assert _chat(client, "m").json()["choices"][0]["message"]["content"] == "Forty-two [2]."

    def test_stall_mode_delays_the_answer(self, client: TestClient) -> None:
        """A stalling model answers only after its stall."""
        client.post("/control/slow", json={"mode": "stall", "stall_s": 0.3})

        started = time.perf_counter()
        response = _chat(client, "slow")

        assert response.status_code == 200
        assert time.perf_counter() - started >= 0.3

    def test_streaming_ends_with_done(self, client: TestClient) -> None:
        """A streamed answer arrives as SSE chunks whose deltas join into the answer."""
        response = _chat(client, "primary", stream=True)
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]

        assert events[-1] == "[DONE]"
        deltas = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
        assert "".join(deltas) == "The gateway listens on port 8000. [1]"


class TestControl:
    def test_stats_count_requests_per_model_and_reset_clears_them(self, client: TestClient) -> None:
        """Every request counts under its model; reset forgets counts and behaviours."""
        client.post("/control/a", json={"mode": "fail"})
        _chat(client, "a")
        _chat(client, "a")
        _chat(client, "b")

        assert client.get("/control/stats").json() == {"requests": {"a": 2, "b": 1}}
        client.post("/control/reset")
        assert client.get("/control/stats").json() == {"requests": {}}
        assert _chat(client, "a").status_code == 200

    def test_unknown_mode_is_refused(self, client: TestClient) -> None:
        """A behaviour with an unknown mode is a validation error."""
        assert client.post("/control/a", json={"mode": "explode"}).status_code == 422

    def test_models_lists_configured_and_called_models(self, client: TestClient) -> None:
        """GET /v1/models names every model configured or asked for."""
        client.post("/control/a", json={"mode": "ok"})
        _chat(client, "b")

        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert ids == ["a", "b"]


class TestRunInThread:
    def test_serves_on_loopback_and_stops(self) -> None:
        """The threaded server answers on 127.0.0.1 and releases its port on exit."""
        with run_in_thread() as server:
            assert server.api_base.startswith("http://127.0.0.1:")
            response = httpx.post(
                f"{server.api_base}/chat/completions",
                json={"model": "x", "messages": MESSAGES},
                timeout=5,
            )
            assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/v1/models", timeout=1)
