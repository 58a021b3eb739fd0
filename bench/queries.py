"""Query benchmark: the gateway (four Kafka hops) against the same code called in-process.

The in-process path runs the retriever's search (its Weaviate adapter, the embedding model, its
live-version filter and chunk selection) and then the generator's ``answer_context`` (prompt,
the LiteLLM Router with the local model, citations) in this process, against the same collection
and tenant, with no Kafka in between. Both paths answer the same questions at the same
concurrency in the same run; per percentile, gateway minus in-process is what the hops (and HTTP)
cost.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.metrics import summarise_latencies

__all__ = ["InProcessPath", "LoadLimits", "run", "run_load"]

Ask = Callable[[str], Awaitable[None]]

_MIN_REQUESTS_PER_WORKER = 3


@dataclass(frozen=True)
class LoadLimits:
    """Bounds of one load run: at most ``requests`` requests and ``seconds`` of wall time."""

    requests: int
    seconds: float


async def run_load(
    ask: Ask,
    questions: Sequence[str],
    concurrency: int,
    limits: LoadLimits,
    on_done: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Ask ``questions`` round-robin from ``concurrency`` workers; return latency percentiles.

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
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + limits.seconds

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            question = next(feed)
            begun = time.perf_counter()
            try:
                await ask(question)
            except Exception:  # counted, not fatal: one failure must not void the whole run
                errors += 1
            else:
                latencies.append((time.perf_counter() - begun) * 1000)
            if on_done is not None:
                on_done()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    if not latencies:
        return {"count": 0.0, "errors": float(errors)}
    return {**summarise_latencies(latencies, seconds), "errors": float(errors)}


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
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def ask(self, question: str) -> None:
        """Answer ``question`` as the retriever and the generator would, minus the topics."""
        from ragstream_common.events import QueryRequested
        from ragstream_generator.handlers import answer_context
        from ragstream_retriever.handlers import search_query

        event = QueryRequested(text=question, reply_to="bench-in-process")
        await search_query(self._retriever, event)
        context = self._captured.published.pop(event.query_id)
        answer = await answer_context(context, self._generator)
        if answer.error:
            raise RuntimeError(answer.error)


def _gateway_asker(client: httpx.AsyncClient) -> Ask:
    async def ask(question: str) -> None:
        response = await client.post("/v1/query", json={"query": question})
        response.raise_for_status()

    return ask


async def _measure(
    gateway_url: str,
    questions: Sequence[str],
    concurrencies: Sequence[int],
    limits: LoadLimits,
    console: Console,
) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {"gateway": {}, "in_process": {}}
    pool = httpx.Limits(max_connections=max(concurrencies), max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=gateway_url, timeout=60.0, limits=pool) as client,
        InProcessPath() as in_process,
    ):
        paths: dict[str, Ask] = {"gateway": _gateway_asker(client), "in_process": in_process.ask}
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
                # Every worker asks a few times, or the level would never really be reached.
                level = LoadLimits(
                    max(limits.requests, _MIN_REQUESTS_PER_WORKER * concurrency), limits.seconds
                )
                # Alternating the paths at each level keeps slow drift (other load on the
                # machine) from landing on one path only.
                for name, ask in paths.items():
                    task = progress.add_task(f"{name} c={concurrency}", total=level.requests)
                    results[name][str(concurrency)] = await run_load(
                        ask,
                        questions,
                        concurrency,
                        level,
                        on_done=lambda task=task: progress.advance(task),  # type: ignore[misc]
                    )
                    if not console.is_terminal:
                        # No live bars in a log: a line per finished run shows it is alive.
                        figures = results[name][str(concurrency)]
                        console.print(
                            f"{name} c={concurrency}: {figures.get('count', 0):.0f} answers, "
                            f"p50 {figures.get('p50_ms', float('nan')):.0f} ms",
                            highlight=False,
                        )
    return results


def run(
    *,
    gateway_url: str,
    questions: Sequence[str],
    concurrencies: Sequence[int],
    limits: LoadLimits,
    console: Console,
) -> dict[str, Any]:
    """Run the query benchmark and return its figures.

    Args:
        gateway_url: The gateway.
        questions: Asked round-robin, on the default tenant (the sample corpus).
        concurrencies: The levels, for example 1, 8 and 32.
        limits: Bounds of each (path, level) run.
        console: Progress output.
    """
    console.print(
        f"[bold]queries[/]: gateway vs in-process at concurrency {list(concurrencies)}, "
        f"up to {limits.requests} requests or {limits.seconds:.0f} s each"
    )
    measured = asyncio.run(_measure(gateway_url, questions, concurrencies, limits, console))
    overhead: dict[str, dict[str, float]] = {}
    for level, gateway in measured["gateway"].items():
        local = measured["in_process"].get(level, {})
        if "p50_ms" in gateway and "p50_ms" in local:
            overhead[level] = {
                f"{p}_ms": gateway[f"{p}_ms"] - local[f"{p}_ms"] for p in ("p50", "p95", "p99")
            }
    at_eight = overhead.get("8", {})
    return {
        "concurrency": list(concurrencies),
        "limits": {"requests": limits.requests, "seconds": limits.seconds},
        "gateway": measured["gateway"],
        "in_process": measured["in_process"],
        "overhead": overhead,
        "query_overhead_p50_ms": at_eight.get("p50_ms"),
        "query_overhead_p99_ms": at_eight.get("p99_ms"),
        "time_to_first_token": None,
        "notes": (
            "overhead = gateway - in-process per percentile at the same concurrency in the same "
            "run: Kafka's four hops, HTTP and the gateway. Time to first token is not measured: "
            "the platform does not stream answers yet."
        ),
    }
