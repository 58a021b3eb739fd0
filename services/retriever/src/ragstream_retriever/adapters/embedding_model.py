"""The query embedding model: all-MiniLM-L6-v2 through ragstream_embedding, the embedder's wrapper.

Documents and queries must be embedded by the same code, or their vectors would not be comparable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

from ragstream_common.logging import get_logger
from ragstream_embedding import load_default_model

__all__ = ["AsyncEmbedder", "QueuedModel", "load_query_model"]

_log = get_logger(__name__)


class QueuedModel(Protocol):
    """A model that queues calls on its own threads (``ragstream_embedding.EmbeddingModel``)."""

    @property
    def dimensions(self) -> int:
        """The size of the vectors ``submit`` makes."""
        ...

    def submit(self, texts: Sequence[str], batch_size: int = ...) -> Future[list[list[float]]]:
        """Queue the texts and return the future of one vector per text, at once."""
        ...


class AsyncEmbedder:
    """The ``QueryEmbedder`` port: the model's future, awaited on the event loop.

    Args:
        model: The loaded model; its forward passes run on its own threads.
    """

    def __init__(self, model: QueuedModel) -> None:
        self._model = model

    @property
    def dimensions(self) -> int:
        """The size of the vectors ``embed`` returns."""
        return self._model.dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one normalised vector per text; the loop serves other messages meanwhile.

        Args:
            texts: The texts to embed.
        """
        return await asyncio.wrap_future(self._model.submit(list(texts)))


async def load_query_model(dimensions: int, threads: int | None = None) -> AsyncEmbedder:
    """Load all-MiniLM-L6-v2 off the loop and check it produces vectors of the index's size.

    Args:
        dimensions: The vector size the index holds; any other model is a misconfiguration.
        threads: The cores the model uses (``load_default_model``); None: all of them.

    Raises:
        RuntimeError: The model's vectors do not have ``dimensions`` components.
    """
    started = time.perf_counter()
    # Seconds of blocking work: importing torch and reading ~90 MB of weights.
    model = await asyncio.to_thread(load_default_model, threads=threads)
    if model.dimensions != dimensions:
        raise RuntimeError(
            f"model {model.version} makes {model.dimensions}-dimensional vectors, "
            f"the index expects {dimensions} (RAGSTREAM_EMBEDDING_DIMENSIONS)"
        )
    _log.info(
        "model_loaded",
        model=model.version,
        dimensions=model.dimensions,
        load_s=round(time.perf_counter() - started, 2),
    )
    return AsyncEmbedder(model)
