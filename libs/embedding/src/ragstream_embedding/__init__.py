"""ragstream-embedding: the one wrapper around the embedding model.

The embedder and the retriever's query path share it, so documents and queries are embedded by the
same code; no other service imports it (import-linter enforces that), which keeps torch out of them.
"""

from ragstream_embedding.model import EmbeddingModel, load_default_model

__all__ = ["EmbeddingModel", "load_default_model"]
