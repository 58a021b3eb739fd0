"""The query benchmark's streaming parts: a streamed answer's timings, summaries."""

from __future__ import annotations

import json

import httpx
import pytest

from bench.queries import (
    StreamedAnswer,
    outside_stages_ms,
    stream_answer,
    summarise_streamed,
)


def _gateway(body: str, seen: list[dict[str, object]]) -> httpx.AsyncClient:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(respond), base_url="http://gateway")


class TestStreamAnswer:
    async def test_times_first_delta_and_done(self) -> None:
        """A stream with deltas gives a first-delta time no later than its done time."""
        seen: list[dict[str, object]] = []
        body = 'event: delta\ndata: {"seq":0,"delta":"A "}\n\nevent: done\ndata: {}\n\n'
        async with _gateway(body, seen) as client:
            answer = await stream_answer(client, "why?")
        assert answer.first_delta_ms is not None
        assert 0 <= answer.first_delta_ms <= answer.done_ms
        assert seen == [{"query": "why?", "stream": True, "cache": False}]

    async def test_answer_without_deltas(self) -> None:
        """An answer that comes whole, with no delta, has no first-delta time."""
        async with _gateway("event: done\ndata: {}\n\n", []) as client:
            answer = await stream_answer(client, "why?")
        assert answer.first_delta_ms is None

    async def test_error_event_raises(self) -> None:
        """An ``error`` event fails the request with the gateway's detail."""
        body = 'event: delta\ndata: {}\n\nevent: error\ndata: {"detail":"no answer"}\n\n'
        async with _gateway(body, []) as client:
            with pytest.raises(RuntimeError, match="no answer"):
                await stream_answer(client, "why?")

    async def test_stream_cut_short_raises(self) -> None:
        """A stream that ends without ``done`` is a failure, not an answer."""
        async with _gateway("event: delta\ndata: {}\n\n", []) as client:
            with pytest.raises(RuntimeError, match="without a done"):
                await stream_answer(client, "why?")


class TestSummariseStreamed:
    def test_first_token_and_done_percentiles(self) -> None:
        """First-token percentiles cover answers with a delta; done percentiles cover them all."""
        answers = [
            StreamedAnswer(10.0, 100.0),
            StreamedAnswer(30.0, 200.0),
            StreamedAnswer(None, 50.0),
        ]
        figures = summarise_streamed(answers)
        assert figures["count"] == 2
        assert figures["without_delta"] == 1
        assert figures["p50_ms"] == 20.0
        assert figures["done_p50_ms"] == 100.0
        assert figures["done_p99_ms"] == pytest.approx(198.0)

    def test_no_answers_no_percentiles(self) -> None:
        """Without answers there are counts but no made-up percentiles."""
        assert summarise_streamed([]) == {"count": 0.0, "without_delta": 0.0}


class TestOutsideStages:
    def test_gateway_total_less_the_stages(self) -> None:
        """What the hops cost is the gateway's total less the two stages the services report."""
        timings = {"gateway_total_ms": 60.0, "retrieve_ms": 30.0, "generate_ms": 12.5}
        assert outside_stages_ms(timings) == 17.5

    def test_missing_stage_gives_none(self) -> None:
        """An answer that did not report a stage (a failure) is left out, not counted as zero."""
        assert outside_stages_ms({"gateway_total_ms": 60.0, "retrieve_ms": 30.0}) is None
