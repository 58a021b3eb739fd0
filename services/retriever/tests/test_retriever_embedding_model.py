"""Tests for the query model adapter: a blocking model awaited without blocking the loop."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ragstream_retriever.adapters.embedding_model import AsyncEmbedder


class RecordingModel:
    """A blocking model that records the thread of each call."""

    dimensions = 3

    def __init__(self) -> None:
        self.threads: list[int] = []

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
        self.threads.append(threading.get_ident())
        return [[float(len(text)), 0.0, 1.0] for text in texts]


class TestAsyncEmbedder:
    async def test_vectors_come_from_the_wrapped_model(self) -> None:
        """embed returns the model's vectors, one per text, in order, and its dimensions."""
        embedder = AsyncEmbedder(RecordingModel())
        assert await embedder.embed(["ab", "abcd"]) == [[2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]
        assert embedder.dimensions == 3

    async def test_model_runs_off_the_event_loop_thread(self) -> None:
        """The blocking model is called from a worker thread, never the loop's own."""
        model = RecordingModel()
        await AsyncEmbedder(model).embed(["query"])
        assert model.threads
        assert threading.get_ident() not in model.threads
