"""The embedding model, loaded through ragstream_embedding (sentence-transformers, offline)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

from ragstream_embedder.settings import EmbedderSettings
from ragstream_embedding import EmbeddingModel, load_default_model

__all__ = ["SentenceTransformerEmbedder", "load_model"]


class SentenceTransformerEmbedder:
    """The shared model wrapper, with the forward-pass batch size taken from the settings.

    Args:
        model: The loaded model.
        batch_size: Texts per forward pass.
    """

    def __init__(self, model: EmbeddingModel, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self.version = model.version

    def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        """Queue the texts on the model; return the future of one normalised vector per text.

        Args:
            texts: The texts to embed.
        """
        return self._model.submit(texts, batch_size=self._batch_size)


def load_model(settings: EmbedderSettings) -> SentenceTransformerEmbedder:
    """Load all-MiniLM-L6-v2 from site-packages, offline; takes seconds, so call it in a thread.

    Args:
        settings: Device, cores and forward-pass batch size.
    """
    model = load_default_model(device=settings.model_device, threads=settings.model_threads)
    return SentenceTransformerEmbedder(model, batch_size=settings.model_batch_size)
