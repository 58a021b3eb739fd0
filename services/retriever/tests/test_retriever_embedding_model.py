"""Tests for the query model adapter: the model's future awaited without blocking the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from ragstream_retriever.adapters.embedding_model import AsyncEmbedder


class HeldModel:
    """A model whose vectors come from another thread once the test releases them."""

    dimensions = 3

    def __init__(self) -> None:
        self.release = threading.Event()

    def submit(self, texts: Sequence[str], batch_size: int = 32) -> Future[list[list[float]]]:
        future: Future[list[list[float]]] = Future()

        def work() -> None:
            if self.release.wait(timeout=5):
                future.set_result([[float(len(text)), 0.0, 1.0] for text in texts])
            else:  # an adapter that blocked the loop never let the test release it
                future.set_exception(TimeoutError("the model was never released"))

        threading.Thread(target=work, daemon=True).start()
        return future


class TestAsyncEmbedder:
    async def test_vectors_come_from_the_wrapped_model(self) -> None:
        """embed returns the model's vectors, one per text, in order, and its dimensions."""
        model = HeldModel()
        model.release.set()
        embedder = AsyncEmbedder(model)
        assert await embedder.embed(["ab", "abcd"]) == [[2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]
        assert embedder.dimensions == 3

    async def test_the_loop_serves_other_work_while_the_model_runs(self) -> None:
        """The model computes on its own thread; the event loop is free until the vectors come."""
        model = HeldModel()
        embedding = asyncio.create_task(AsyncEmbedder(model).embed(["query"]))
        await asyncio.sleep(0)
        assert not embedding.done()
        # The loop runs this code while the model is still held: it is not blocked.
        model.release.set()
        assert await asyncio.wait_for(embedding, timeout=30) == [[5.0, 0.0, 1.0]]
