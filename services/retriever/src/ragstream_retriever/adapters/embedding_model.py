"""The query embedding model: all-MiniLM-L6-v2 through ragstream_embedding, the embedder's wrapper.

Documents and queries must be embedded by the same code, or their vectors would not be comparable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from ragstream_common.logging import get_logger
from ragstream_embedding import load_default_model

__all__ = ["AsyncEmbedder", "BlockingModel", "load_query_model"]

_log = get_logger(__name__)


class BlockingModel(Protocol):
    """A model whose ``embed`` blocks (``ragstream_embedding.EmbeddingModel``)."""

    @property
    def dimensions(self) -> int:
        """The size of the vectors ``embed`` returns."""
        ...

    def embed(self, texts: Sequence[str], batch_size: int = ...) -> list[list[float]]:
        """Return one vector per text."""
        ...


class AsyncEmbedder:
    """The ``QueryEmbedder`` port: a blocking model awaited from a worker thread.

    Args:
        model: The loaded model; it serialises concurrent callers itself.
    """

    def __init__(self, model: BlockingModel) -> None:
        self._model = model

    @property
    def dimensions(self) -> int:
        """The size of the vectors ``embed`` returns."""
        return self._model.dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one normalised vector per text, computed off the event loop.

        Args:
            texts: The texts to embed.
        """
        # CPU-bound for tens of milliseconds: on the loop it would stall every other message.
        return await asyncio.to_thread(self._model.embed, list(texts))


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
