"""Tests for the embedding model wrapper, with the real bundled model."""

from __future__ import annotations

import math

import pytest

from ragstream_embedding import EmbeddingModel, load_default_model


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return load_default_model()


class TestEmbeddingModel:
    def test_vectors_are_normalised_and_sized(self, model: EmbeddingModel) -> None:
        """Each text becomes one unit-length vector of the model's dimension (384)."""
        vectors = model.embed(["The cat sat on the mat.", "Kafka keeps partitions ordered."])
        assert len(vectors) == 2
        assert all(len(vector) == model.dimensions == 384 for vector in vectors)
        assert all(
            math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4) for vector in vectors
        )

    def test_similar_texts_score_higher_than_unrelated(self, model: EmbeddingModel) -> None:
        """The model is real: a paraphrase is closer than an unrelated sentence."""
        query, paraphrase, unrelated = model.embed(
            [
                "How tall is the lighthouse?",
                "The lighthouse is 40 metres high.",
                "Pasta needs salt.",
            ]
        )

        def dot(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))

        assert dot(query, paraphrase) > dot(query, unrelated) + 0.2

    def test_token_budget_and_identity(self, model: EmbeddingModel) -> None:
        """The wrapper reports the model's 256 word-piece limit and a stable version string."""
        assert model.max_tokens == 256
        assert model.count_tokens("hello world") == 4
        assert model.version.startswith("all-MiniLM-L6-v2@")

    def test_empty_input_embeds_nothing(self, model: EmbeddingModel) -> None:
        """An empty batch returns no vectors and does not call the model."""
        assert model.embed([]) == []
