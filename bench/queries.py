"""Query benchmark: the gateway (four Kafka hops) against the same code called in-process.

The in-process path runs the retriever's search (its Weaviate adapter, the embedding model, its
live-version filter and chunk selection) and then the generator's ``answer_context`` (prompt,
the LiteLLM Router with the local model, citations) in this process, against the same collection
and tenant, with no Kafka in between. Both paths answer the same questions at the same
concurrency in the same run; per percentile, gateway minus in-process is what the hops (and HTTP)
cost. Every question is asked with the caches off (``"cache": false``), on both paths, so that
the figures are the model's and the pipeline's, not a cache's.

Time to first token is measured through the gateway with ``"stream": true``: from sending the
request to the first ``delta`` Server-Sent Event, and to the ``done`` event.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import json
import math
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.metrics import percentile, summarise_latencies

__all__ = [
    "GatewayAsker",
    "InProcessPath",
    "LoadLimits",
    "LoadRun",
    "StreamedAnswer",
    "alternate",
    "failure_kind",
    "load",
    "outside_stages_ms",
    "run",
    "run_load",
    "stream_answer",
    "summarise_streamed",
]

Ask = Callable[[str], Awaitable[None]]

_MIN_REQUESTS_PER_WORKER = 3
# Streaming is measured at these levels only: one client alone, and a few at once. Higher levels
# would measure the generator's queue, which the non-streamed runs already show.
STREAM_CONCURRENCIES = (1, 8)
# Unmeasured streamed questions before the first streamed level: the streaming code paths of the
# gateway and the generator warm up without spending a whole round of questions on it.
_STREAM_WARM_UP = 3


@dataclass(frozen=True)
class LoadLimits:
    """Bounds of one load run: at most ``requests`` requests and ``seconds`` of wall time."""

    requests: int
    seconds: float


def _detail(response: httpx.Response) -> str:
    """Return an error response's ``detail``, its text, or "" when the body was never read.

    Called while a failure is being counted, so it must not raise: a streamed response that
    failed its status check has no body in memory.
    """
    try:
        body = response.json()
    except httpx.ResponseNotRead:
        return ""
    except ValueError:
        return response.text
    return str(body.get("detail", "")) if isinstance(body, dict) else str(body)


def failure_kind(error: Exception) -> str:
    """Name a failed request's error briefly: the HTTP status and the API's message, or the type.

    Args:
        error: What the request raised.
    """
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}: {_detail(error.response)[:80]}".rstrip(": ")
    return f"{type(error).__name__}: {str(error)[:80]}".rstrip(": ")


@dataclass
class LoadRun:
    """What one bounded load run saw: a latency per answered request, its wall time, failures."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def errors(self) -> int:
        """Requests that failed."""
        return sum(self.failures.values())

    def summary(self) -> dict[str, Any]:
        """Return the run's percentiles and throughput (count and errors only, if none answered),
        and with any failure, how many of each kind (``error_kinds``)."""
        figures: dict[str, Any] = {"count": 0.0}
        if self.latencies_ms:
            figures = summarise_latencies(self.latencies_ms, self.seconds)
        figures["errors"] = float(self.errors)
        if self.failures:
            figures["error_kinds"] = dict(self.failures.most_common())
        return figures

    def add(self, other: LoadRun) -> None:
        """Pool ``other`` into this run: its samples, its time and its failures."""
        self.latencies_ms.extend(other.latencies_ms)
        self.seconds += other.seconds
        self.failures.update(other.failures)


async def load(
    ask: Ask,
    questions: Sequence[str],
    concurrency: int,
    limits: LoadLimits,
    on_done: Callable[[], None] | None = None,
) -> LoadRun:
    """Ask ``questions`` round-robin from ``concurrency`` workers; return every latency.

    Bounded in count and in time: workers stop taking new requests once either is spent.

    Args:
        ask: Sends one question and returns when its answer is complete; raises on failure.
        questions: Asked in turn.
        concurrency: Requests in flight at once.
        limits: The run's bounds.
        on_done: Called after each request (progress).
    """
    feed = itertools.cycle(questions)
    remaining = limits.requests
    run = LoadRun()
    started = time.perf_counter()
    deadline = started + limits.seconds

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            question = next(feed)
            begun = time.perf_counter()
            try:
                await ask(question)
            except Exception as error:  # counted, not fatal: one must not void the whole run
                run.failures[failure_kind(error)] += 1
            else:
                run.latencies_ms.append((time.perf_counter() - begun) * 1000)
            if on_done is not None:
                on_done()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


async def run_load(
    ask: Ask,
    questions: Sequence[str],
    concurrency: int,
    limits: LoadLimits,
    on_done: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``load`` and return its latency percentiles and throughput (``LoadRun.summary``)."""
    return (await load(ask, questions, concurrency, limits, on_done)).summary()


async def alternate(
    paths: Mapping[str, Ask],
    questions: Sequence[str],
    concurrency: int,
    limits: LoadLimits,
    rounds: int,
    on_done: Mapping[str, Callable[[], None]] | None = None,
) -> dict[str, LoadRun]:
    """Load every path in turn, ``rounds`` times, and pool each path's rounds.

    Each round gives every path its share of ``limits`` (requests and seconds), one path after
    the other. A p99 rests on a handful of slow requests, so load on the machine that comes and
    goes in the middle of a level would otherwise land on one path only and decide the
    difference between them; in rounds, both paths meet it.

    Args:
        paths: The ways of asking, by name.
        questions: Asked round-robin, from the first in every round.
        concurrency: Requests in flight at once.
        limits: Each path's bounds over all its rounds.
        rounds: How many turns each path gets.
        on_done: Per path, called after each of its requests (progress).
    """
    share = LoadLimits(math.ceil(limits.requests / rounds), limits.seconds / rounds)
    pooled = {name: LoadRun() for name in paths}
    for _ in range(rounds):
        for name, ask in paths.items():
            done = on_done.get(name) if on_done else None
            pooled[name].add(await load(ask, questions, concurrency, share, done))
    return pooled


class _CapturingBroker:
    """Stands in for the retriever's broker: keeps what the search would have published."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}

    async def publish(self, message: Any, **options: Any) -> None:
        """Keep ``message`` under its Kafka key (the query id), instead of sending it."""
        self.published[options["key"].decode()] = message


class InProcessPath:
    """The retriever's search and the generator's answer, called directly, no Kafka.

    Calls the services' own handler functions (``search_query``, then ``answer_context``) with
    their own settings (so ``RAGSTREAM_*`` variables apply as they do to the services) and
    adapters; the retriever's publish is captured in memory instead of sent, so nothing of
    their logic is re-implemented here and changes to it are measured too.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._captured = _CapturingBroker()
        self._retriever: Any = None
        self._generator: Any = None

    async def __aenter__(self) -> InProcessPath:
        from ragstream_common.messaging import create_broker
        from ragstream_common.metrics import ServiceMetrics
        from ragstream_common.service import freeze_startup_objects
        from ragstream_generator.adapters.llm import build_answer_model
        from ragstream_generator.dependencies import Dependencies as GeneratorDependencies
        from ragstream_generator.settings import GeneratorSettings
        from ragstream_retriever.adapters.embedding_model import load_query_model
        from ragstream_retriever.adapters.weaviate_index import WeaviateIndex
        from ragstream_retriever.dependencies import Dependencies as RetrieverDependencies
        from ragstream_retriever.settings import RetrieverSettings

        retriever_settings = RetrieverSettings()
        index = WeaviateIndex.from_settings(retriever_settings)
        self._stack.push_async_callback(index.close)
        await index.connect()
        self._retriever = RetrieverDependencies(
            settings=retriever_settings,
            metrics=ServiceMetrics("bench-retriever"),
            broker=self._captured,  # type: ignore[arg-type]  # only publish() is called
            index_port=index,
            model_port=await load_query_model(
                retriever_settings.embedding_dimensions, retriever_settings.model_threads
            ),
        )
        generator_settings = GeneratorSettings()
        # LiteLLM's import warns about its own pydantic models: nothing a reader can act on. Set
        # here, just before the import, because libraries loaded earlier reset the filters.
        warnings.filterwarnings("ignore", message=".*`ReadOnly` qualifier", category=UserWarning)
        model = await asyncio.to_thread(build_answer_model, generator_settings)
        self._stack.push_async_callback(model.aclose)
        await model.warm_up()
        generator_metrics = ServiceMetrics("bench-generator")
        self._generator = GeneratorDependencies(
            settings=generator_settings,
            metrics=generator_metrics,
            # Never connected: answer_context returns the answer, the handler would publish it.
            broker=create_broker(generator_settings, generator_metrics),
            llm_port=model,
        )
        # The services freeze what their startup made, so that full collections stop walking
        # it (ragstream_common.service.freeze_after_startup); this path gets the same, or its
        # collection pauses would flatter the Kafka hops.
        freeze_startup_objects()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        gc.unfreeze()
        await self._stack.aclose()

    async def ask(self, question: str) -> None:
        """Answer ``question`` as the retriever and the generator would, minus the topics."""
        from ragstream_common.events import QueryRequested
        from ragstream_generator.handlers import answer_context
        from ragstream_retriever.handlers import search_query

        # No caches, as the gateway path asks: both paths do the same work for every question.
        event = QueryRequested(text=question, reply_to="bench-in-process", cache=False)
        await search_query(self._retriever, event)
        context = self._captured.published.pop(event.query_id)
        answer = await answer_context(context, self._generator)
        if answer.error:
            raise RuntimeError(answer.error)


class GatewayAsker:
    """Asks through the gateway, keeping each answer's time outside the pipeline's stages.

    ``outside_ms`` per answer is the gateway's own total less the retriever's and the
    generator's stage times it reports: the Kafka hops, the gateway's work and any time the query
    queued for a busy consumer. Unlike the gateway - in-process difference it needs no second
    path, so it stays a measure of the hops when batching makes the pipeline faster than the
    in-process calls.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.outside_ms: list[float] = []

    async def __call__(self, question: str) -> None:
        """Ask ``question`` with the caches off; raise if the gateway did not answer."""
        # A cached answer would measure Redis, not the model: every request asks afresh.
        response = await self._client.post("/v1/query", json={"query": question, "cache": False})
        response.raise_for_status()
        outside = outside_stages_ms(response.json().get("timings", {}))
        if outside is not None:
            self.outside_ms.append(outside)


def outside_stages_ms(timings: dict[str, float]) -> float | None:
    """Return the gateway's total less the retrieve and generate stages, None if one is missing.

    Args:
        timings: A query response's ``timings``.
    """
    try:
        return timings["gateway_total_ms"] - timings["retrieve_ms"] - timings["generate_ms"]
    except KeyError:
        return None


@dataclass(frozen=True)
class StreamedAnswer:
    """The client's view of one streamed answer.

    Args:
        first_delta_ms: From sending the request to the first ``delta``; None when the answer
            came with no delta (one that needed no model, such as "I don't know").
        done_ms: From sending the request to the ``done`` event.
    """

    first_delta_ms: float | None
    done_ms: float


async def stream_answer(client: httpx.AsyncClient, question: str) -> StreamedAnswer:
    """Ask ``question`` with ``"stream": true`` (caches off) and time its events.

    Args:
        client: A client on the gateway.
        question: The question.

    Raises:
        RuntimeError: The stream ended with an ``error`` event, or without ``done``.
        httpx.HTTPStatusError: The gateway refused the request.
    """
    body = {"query": question, "stream": True, "cache": False}
    first_delta_ms: float | None = None
    started = time.perf_counter()
    async with aconnect_sse(client, "POST", "/v1/query", json=body) as source:
        source.response.raise_for_status()
        async for event in source.aiter_sse():
            elapsed_ms = (time.perf_counter() - started) * 1000
            if event.event == "delta" and first_delta_ms is None:
                first_delta_ms = elapsed_ms
            elif event.event == "done":
                return StreamedAnswer(first_delta_ms, elapsed_ms)
            elif event.event == "error":
                raise RuntimeError(json.loads(event.data).get("detail", event.data))
    raise RuntimeError("the stream ended without a done event")


def summarise_streamed(answers: Sequence[StreamedAnswer]) -> dict[str, float]:
    """Return time-to-first-token and time-to-done percentiles of streamed answers.

    ``count`` and the ``p*_ms`` figures cover the answers that had a first delta; ``done_*``
    cover every answer; ``without_delta`` counts the answers that came whole, with no delta.

    Args:
        answers: One per completed stream.
    """
    first = [a.first_delta_ms for a in answers if a.first_delta_ms is not None]
    figures: dict[str, float] = {
        "count": float(len(first)),
        "without_delta": float(len(answers) - len(first)),
    }
    if first:
        figures.update({f"p{q}_ms": percentile(first, q) for q in (50, 95, 99)})
    if answers:
        done = [a.done_ms for a in answers]
        figures.update({f"done_p{q}_ms": percentile(done, q) for q in (50, 95, 99)})
    return figures


async def _measure_streaming(
    client: httpx.AsyncClient,
    questions: Sequence[str],
    limits: LoadLimits,
    progress: Progress,
    console: Console,
) -> dict[str, dict[str, float]]:
    """Time to first token and to done, per streamed concurrency level."""
    answers: list[StreamedAnswer] = []

    async def ask(question: str) -> None:
        answers.append(await stream_answer(client, question))

    await run_load(ask, questions, 1, LoadLimits(_STREAM_WARM_UP, limits.seconds))
    results: dict[str, dict[str, float]] = {}
    for concurrency in STREAM_CONCURRENCIES:
        answers.clear()
        level = LoadLimits(
            max(limits.requests, _MIN_REQUESTS_PER_WORKER * concurrency), limits.seconds
        )
        task = progress.add_task(f"stream c={concurrency}", total=level.requests)
        load = await run_load(
            ask,
            questions,
            concurrency,
            level,
            on_done=lambda task=task: progress.advance(task),  # type: ignore[misc]
        )
        results[str(concurrency)] = {
            **summarise_streamed(answers),
            "errors": load["errors"],
            **({"error_kinds": load["error_kinds"]} if "error_kinds" in load else {}),
            "throughput_per_s": load.get("throughput_per_s", 0.0),
        }
        if not console.is_terminal:
            figures = results[str(concurrency)]
            console.print(
                f"stream c={concurrency}: {figures['count']:.0f} first tokens, "
                f"p50 {figures.get('p50_ms', float('nan')):.0f} ms, "
                f"done p50 {figures.get('done_p50_ms', float('nan')):.0f} ms",
                highlight=False,
            )
    return results


async def _measure(
    gateway_url: str,
    questions: Sequence[str],
    concurrencies: Sequence[int],
    limits: LoadLimits,
    rounds: int,
    console: Console,
) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {
        "gateway": {},
        "in_process": {},
        "outside_stages": {},
    }
    pool = httpx.Limits(
        max_connections=max(*concurrencies, *STREAM_CONCURRENCIES), max_keepalive_connections=64
    )
    async with (
        httpx.AsyncClient(base_url=gateway_url, timeout=60.0, limits=pool) as client,
        InProcessPath() as in_process,
    ):
        gateway = GatewayAsker(client)
        paths: dict[str, Ask] = {"gateway": gateway, "in_process": in_process.ask}
        # One unmeasured round per path first: connections, lazy imports, the model's first call.
        for ask in paths.values():
            await run_load(ask, questions, 1, LoadLimits(len(questions), limits.seconds))
        with Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as progress:
            for concurrency in concurrencies:
                # Every worker asks a few times in every round, or the level would never really
                # be reached.
                level = LoadLimits(
                    max(limits.requests, rounds * _MIN_REQUESTS_PER_WORKER * concurrency),
                    limits.seconds,
                )
                tasks = {
                    name: progress.add_task(f"{name} c={concurrency}", total=level.requests)
                    for name in paths
                }
                gateway.outside_ms.clear()
                pooled = await alternate(
                    paths,
                    questions,
                    concurrency,
                    level,
                    rounds,
                    on_done={
                        name: lambda task=task: progress.advance(task)  # type: ignore[misc]
                        for name, task in tasks.items()
                    },
                )
                for name, run in pooled.items():
                    results[name][str(concurrency)] = run.summary()
                if gateway.outside_ms:
                    results["outside_stages"][str(concurrency)] = {
                        f"p{q}_ms": percentile(gateway.outside_ms, q) for q in (50, 95, 99)
                    }
                if not console.is_terminal:
                    # No live bars in a log: a line per finished level shows it is alive.
                    for name in paths:
                        figures = results[name][str(concurrency)]
                        console.print(
                            f"{name} c={concurrency}: {figures.get('count', 0):.0f} answers, "
                            f"p50 {figures.get('p50_ms', float('nan')):.0f} ms",
                            highlight=False,
                        )
            results["streaming"] = await _measure_streaming(
                client, questions, limits, progress, console
            )
    return results


def run(
    *,
    gateway_url: str,
    questions: Sequence[str],
    concurrencies: Sequence[int],
    limits: LoadLimits,
    console: Console,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run the query benchmark and return its figures.

    Args:
        gateway_url: The gateway.
        questions: Asked round-robin, on the default tenant (the sample corpus).
        concurrencies: The levels, for example 1, 8 and 32.
        limits: Bounds of each path at each level, over all its rounds.
        console: Progress output.
        rounds: Turns each path takes at each level, alternating with the other (``alternate``).
    """
    console.print(
        f"[bold]queries[/]: gateway vs in-process at concurrency {list(concurrencies)}, then "
        f"streamed at {list(STREAM_CONCURRENCIES)}, caches off, "
        f"up to {limits.requests} requests or {limits.seconds:.0f} s each, in {rounds} "
        "alternating rounds"
    )
    measured = asyncio.run(_measure(gateway_url, questions, concurrencies, limits, rounds, console))
    overhead: dict[str, dict[str, float]] = {}
    for level, gateway in measured["gateway"].items():
        local = measured["in_process"].get(level, {})
        if "p50_ms" in gateway and "p50_ms" in local:
            overhead[level] = {
                f"{p}_ms": gateway[f"{p}_ms"] - local[f"{p}_ms"] for p in ("p50", "p95", "p99")
            }
    at_eight = overhead.get("8", {})
    streaming = measured["streaming"]
    alone = streaming.get("1", {})
    return {
        "concurrency": list(concurrencies),
        "limits": {"requests": limits.requests, "seconds": limits.seconds, "rounds": rounds},
        "gateway": measured["gateway"],
        "in_process": measured["in_process"],
        "overhead": overhead,
        "outside_stages": measured["outside_stages"],
        "hops_alone_p50_ms": measured["outside_stages"].get("1", {}).get("p50_ms"),
        "hops_alone_p99_ms": measured["outside_stages"].get("1", {}).get("p99_ms"),
        "query_overhead_p50_ms": at_eight.get("p50_ms"),
        "query_overhead_p99_ms": at_eight.get("p99_ms"),
        "time_to_first_token": {**alone, "concurrency": 1},
        "time_to_first_token_by_concurrency": streaming,
        "ttft_p50_ms": alone.get("p50_ms"),
        "notes": (
            'Every request asks with the caches off (gateway "cache": false, in-process '
            "QueryRequested(cache=False)). overhead = gateway - in-process per percentile at the "
            "same concurrency in the same run, the two paths taking turns in limits.rounds rounds "
            "and each path's rounds pooled: Kafka's four hops, HTTP and the gateway, less what "
            "the services' batching saves (negative when batching saves more than the hops "
            "cost). outside_stages: per gateway answer, gateway_total_ms - retrieve_ms - "
            "generate_ms (hops, gateway work and queueing), percentiles per concurrency; "
            "hops_alone_* is its concurrency-1 figure, where nothing queues. "
            'time_to_first_token: through the gateway with "stream": true, client-side, from '
            "sending the request to the first delta event (p*_ms) and to the done event "
            "(done_p*_ms); answers that came with no delta are counted in without_delta."
        ),
    }
