"""Fixtures of the ingestor's tests: the model's real tokenizer, a fake one, and sample files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ragstream_ingestor.adapters.tokenizer import WordPieceCounter, load_word_piece_counter

FIXTURES = Path(__file__).resolve().parent / "fixtures"


class WordCounter:
    """A fake ``TokenCounter``: one token per whitespace-separated word, plus [CLS] and [SEP].

    Like the real tokenizer it adds up over text joined by whitespace, so domain tests can
    reason in words.
    """

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return each text's word count plus two."""
        return [len(text.split()) + 2 for text in texts]


@pytest.fixture(scope="session")
def word_pieces() -> WordPieceCounter:
    """all-MiniLM-L6-v2's real tokenizer, loaded once for the whole run."""
    return load_word_piece_counter()


@pytest.fixture
def word_counter() -> WordCounter:
    """The fake one-token-per-word counter."""
    return WordCounter()


@pytest.fixture(scope="session")
def sample() -> Callable[[str], bytes]:
    """Read a sample file of tests/fixtures by name, as bytes."""
    return lambda name: (FIXTURES / name).read_bytes()
