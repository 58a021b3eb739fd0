"""Tests for the embedding model wrapper, with the real bundled model."""

from __future__ import annotations

import math
import threading

import pytest

from ragstream_embedding import EmbeddingModel, load_default_model
from ragstream_embedding.model import forward_passes


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return load_default_model(threads=2)


def _close(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(a, b, strict=True))


class TestForwardPasses:
    def test_every_text_in_exactly_one_pass_longest_first(self) -> None:
        """Passes cover each index once, and each pass holds texts no longer than the last's."""
        lengths = [5, 90, 12, 40, 40, 7, 300, 1, 66]
        passes = forward_passes(lengths, batch_size=2, workers=2)
        flat = [index for part in passes for index in part]
        assert sorted(flat) == list(range(len(lengths)))
        assert [lengths[index] for index in flat] == sorted(lengths, reverse=True)

    def test_passes_keep_every_worker_busy_to_the_end(self) -> None:
        """48 texts in passes of up to 16 on two workers: four passes of 12, not 16, 16 and 16."""
        passes = forward_passes([10] * 48, batch_size=16, workers=2)
        assert [len(part) for part in passes] == [12, 12, 12, 12]

    def test_a_small_call_of_long_texts_still_splits_across_workers(self) -> None:
        """Three chunks on two workers make two passes; one chunk makes one."""
        passes = forward_passes([900, 800, 700], 32, workers=2)
        assert sorted(len(part) for part in passes) == [1, 2]
        assert forward_passes([900], 32, workers=2) == [[0]]

    def test_short_texts_share_one_pass(self) -> None:
        """Queries too short to be worth a pass each stay in one; enough of them split."""
        assert forward_passes([40] * 6, 32, workers=2) == [[0, 1, 2, 3, 4, 5]]
        assert [len(part) for part in forward_passes([40] * 16, 32, workers=2)] == [8, 8]
        assert len(forward_passes([40] * 16, 32, workers=2, min_pass_chars=1000)) == 1

    def test_pass_sizes_stay_within_the_batch_and_even(self) -> None:
        """No pass exceeds the batch size, and sizes differ by one at most."""
        for count in (1, 15, 16, 17, 100, 361):
            sizes = [len(part) for part in forward_passes([1] * count, 16, workers=2)]
            assert max(sizes) <= 16
            assert max(sizes) - min(sizes) <= 1

    def test_nothing_to_embed_makes_no_pass(self) -> None:
        """No texts, no passes."""
        assert forward_passes([], 16, workers=2) == []


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

    def test_parallel_passes_return_vectors_in_the_callers_order(
        self, model: EmbeddingModel
    ) -> None:
        """Texts of mixed lengths, spread over passes on two workers, each get their own vector."""
        texts = [
            "Short one.",
            "A much longer sentence about Kafka consumer groups and their committed offsets.",
            "Weaviate holds the chunks.",
            "Medium length text on embeddings.",
            "x",
        ]
        together = model.embed(texts, batch_size=2)
        alone = [model.embed([text])[0] for text in texts]
        assert model.workers == 2
        assert all(_close(a, b) for a, b in zip(together, alone, strict=True))

    def test_passes_run_on_the_single_threaded_pool(
        self, model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every pass of a call runs on the model's pool, torch one thread there, never the caller's."""
        import torch

        seen: list[tuple[str, int]] = []
        forward = model._forward

        def recording_forward(texts: list[str]) -> list[list[float]]:
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return forward(texts)

        monkeypatch.setattr(model, "_forward", recording_forward)
        model.embed(["one", "two", "three", "four"], batch_size=1)
        assert len(seen) == 4
        assert all(name.startswith("embedding-pass") for name, _ in seen)
        assert {threads for _, threads in seen} == {1}

    def test_a_later_call_runs_while_an_earlier_calls_pass_is_still_running(
        self, model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Calls share one queue of passes: ``submit`` returns at once, and with one pass of a
        call held, the other worker goes on to the next call and finishes it."""
        release = threading.Event()
        forward = model._forward

        def holding_forward(texts: list[str]) -> list[list[float]]:
            if texts == ["a held pass"]:
                assert release.wait(timeout=60)
            return forward(texts)

        monkeypatch.setattr(model, "_forward", holding_forward)
        try:
            first = model.submit(["a held pass", "short"], batch_size=1)
            second = model.submit(["later", "call"], batch_size=1)
            vectors = second.result(timeout=60)
            assert not first.done()
        finally:
            release.set()
        assert len(first.result(timeout=60)) == 2
        assert _close(vectors[1], model.embed(["call"])[0])

    def test_a_failing_pass_fails_its_call_and_not_the_next(
        self, model: EmbeddingModel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pass that raises hands its error to its call's future; the model goes on."""
        forward = model._forward

        def failing_forward(texts: list[str]) -> list[list[float]]:
            if "poison" in texts:
                raise RuntimeError("out of memory")
            return forward(texts)

        monkeypatch.setattr(model, "_forward", failing_forward)
        with pytest.raises(RuntimeError, match="out of memory"):
            model.embed(["poison", "fine"], batch_size=1)
        assert len(model.embed(["fine", "also fine"], batch_size=1)) == 2

    def test_one_worker_embeds_like_two(self) -> None:
        """A model on one core (one pass at a time) makes the same vectors."""
        single = load_default_model(threads=1)
        texts = ["The cat sat on the mat.", "Kafka keeps partitions ordered.", "Pasta."]
        assert single.workers == 1
        parallel = load_default_model(threads=2).embed(texts, batch_size=1)
        assert all(_close(a, b) for a, b in zip(single.embed(texts), parallel, strict=True))

    def test_tokenizer_is_safe_to_share_between_threads(self, model: EmbeddingModel) -> None:
        """Counting tokens while other threads embed never trips the tokenizer's borrow check."""
        errors: list[BaseException] = []

        def work(number: int) -> None:
            try:
                for _ in range(15):
                    if number % 2:
                        assert model.count_tokens("hello world") == 4
                    else:
                        assert len(model.embed(["one text", "another text"])) == 2
            except BaseException as error:  # handed to the test thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
