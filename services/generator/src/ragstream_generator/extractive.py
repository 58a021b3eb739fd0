"""The local answerer's logic: pick the passages' sentences that best match the question, quote them.

It is the zero-cost default tier and the last fallback of the LiteLLM Router: deterministic, no
I/O, no model weights. A sentence scores by how much of the question's content it covers, each
question term weighted by how rare it is among the passages' sentences (so "Kafka" in a corpus
about Kafka counts for little and "partition" for more). Words are compared after lowercasing,
dropping stop words and stripping common English suffixes, so "indexed" matches "indexing".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragstream_generator.domain import NOT_FOUND_ANSWER, Passage, snippet

__all__ = [
    "MAX_QUOTED_SENTENCES",
    "STOP_WORDS",
    "ScoredSentence",
    "content_terms",
    "extractive_answer",
    "rank_sentences",
    "split_sentences",
    "stem",
]

MAX_QUOTED_SENTENCES = 3
# A runner-up sentence is quoted only when it scores at least this share of the best one, so an
# answer is not padded with sentences that share one incidental word with the question.
RELATIVE_SCORE_FLOOR = 0.5
# One "sentence" can be a whole table or code block without punctuation; quote at most this much.
MAX_QUOTE_CHARS = 400

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "however",
        "may",
        "might",
        "must",
        "shall",
        "us",
        "get",
        "got",
        "does",
        "tell",
        "explain",
        "describe",
        "please",
        "give",
        "show",
        "know",
        "want",
        "need",
        "use",
        "used",
        "using",
        "one",
        "two",
        "many",
        "much",
    ]
)

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
# A sentence ends at ., ! or ? followed by space and something that can start a sentence.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_BLANK_LINE_RE = re.compile(r"\n\s*\n")
# Lines that start a block of their own in Markdown; any other line continues the one before it
# (soft-wrapped prose), so a sentence wrapped over two lines stays one sentence.
_HEADING_LINE_RE = re.compile(r"^\s*#{1,6}\s")
_ITEM_LINE_RE = re.compile(r"^\s*(?:>|[-*+]\s|\d+[.)]\s)")
# Markdown decoration at the start of a line: headings, quotes, bullets, numbered items.
_LINE_DECORATION_RE = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+")
_SIBILANT_ES = ("sses", "shes", "ches", "xes", "zes")
_SUFFIXES = ("ingly", "edly", "ing", "ed", "ly")
_MIN_STEM = 3


@dataclass(frozen=True)
class ScoredSentence:
    """One sentence of one passage, with its match against the question.

    Args:
        n: The passage's [n] marker.
        position: The sentence's index within its passage.
        text: The sentence, as it will be quoted.
        score: Share of the question's (rarity-weighted) terms it contains, from 0 to 1.
    """

    n: int
    position: int
    text: str
    score: float


def stem(word: str) -> str:
    """Strip common English inflections from a lowercase word, conservatively.

    Not a full stemmer: it maps plurals, -ing, -ed and -ly forms of a word onto one stem
    ("indexes", "indexed", "indexing" -> "index") and leaves short words alone.

    Args:
        word: A lowercase word.
    """
    if len(word) <= _MIN_STEM:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(_SIBILANT_ES):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            word = word[: -len(suffix)]
            # "running" -> "runn" -> "run"; "stopped" -> "stopp" -> "stop".
            if len(word) > _MIN_STEM and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    # "store", "stored" and "storing" all become "stor".
    if word.endswith("e") and len(word) > _MIN_STEM + 1:
        word = word[:-1]
    return word


def content_terms(text: str) -> list[str]:
    """Return the stems of ``text``'s content words, in order: lowercased, stop words removed.

    Args:
        text: Any text.
    """
    terms = []
    for match in _WORD_RE.finditer(text.lower()):
        word = match.group().replace("'", "")
        if word in STOP_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        terms.append(stem(word))
    return terms


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences and lines, without Markdown decoration or blank pieces.

    Args:
        text: A passage's text.
    """
    sentences = []
    for line in _logical_lines(text):
        for piece in _SENTENCE_END_RE.split(line):
            sentence = _LINE_DECORATION_RE.sub("", piece.strip()).strip()
            if sentence:
                sentences.append(sentence)
    return sentences


def _logical_lines(text: str) -> list[str]:
    """Join soft-wrapped lines: paragraphs, list items and quotes each become one line."""
    logical: list[str] = []
    for block in _BLANK_LINE_RE.split(text):
        current: list[str] = []
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            if _HEADING_LINE_RE.match(line):
                logical += [" ".join(current)] if current else []
                logical.append(stripped)
                current = []
            elif _ITEM_LINE_RE.match(line):
                logical += [" ".join(current)] if current else []
                current = [stripped]
            else:
                current.append(stripped)
        if current:
            logical.append(" ".join(current))
    return logical


def rank_sentences(question: str, passages: Sequence[Passage]) -> list[ScoredSentence]:
    """Return every sentence that shares a content term with ``question``, best first.

    Ties go to the better-ranked passage, then to the earlier sentence. A sentence repeated in
    two passages (chunks overlap) is kept once, with its first passage.

    Args:
        question: The question.
        passages: The numbered passages, in the retriever's rank order.
    """
    question_terms = set(content_terms(question))
    if not question_terms:
        return []
    candidates: list[tuple[int, int, str, set[str]]] = []
    seen_texts: set[str] = set()
    for passage in passages:
        for position, sentence in enumerate(split_sentences(passage.text)):
            key = " ".join(sentence.lower().split())
            if key in seen_texts:
                continue
            seen_texts.add(key)
            candidates.append((passage.n, position, sentence, set(content_terms(sentence))))
    if not candidates:
        return []
    # Inverse document frequency over the candidate sentences, smoothed so that a term present
    # in every sentence still counts a little.
    weights = {
        term: math.log(1 + len(candidates) / (1 + sum(term in terms for *_, terms in candidates)))
        for term in question_terms
    }
    total = sum(weights.values())
    scored = [
        ScoredSentence(
            n=n,
            position=position,
            text=sentence,
            score=sum(weights[term] for term in question_terms & terms) / total,
        )
        for n, position, sentence, terms in candidates
        if question_terms & terms
    ]
    scored.sort(key=lambda s: (-s.score, s.n, s.position))
    return scored


def extractive_answer(
    question: str, passages: Sequence[Passage], *, max_sentences: int = MAX_QUOTED_SENTENCES
) -> str:
    """Answer ``question`` by quoting the best-matching sentences, each followed by its [n].

    Args:
        question: The question.
        passages: The numbered passages, in the retriever's rank order.
        max_sentences: How many sentences to quote at most.

    Returns:
        The quoted sentences joined by spaces, or ``NOT_FOUND_ANSWER`` when no sentence shares
        a content word with the question.
    """
    ranked = rank_sentences(question, passages)
    if not ranked:
        return NOT_FOUND_ANSWER
    floor = ranked[0].score * RELATIVE_SCORE_FLOOR
    chosen = [s for s in ranked[:max_sentences] if s.score >= floor]
    return " ".join(f"{snippet(s.text, MAX_QUOTE_CHARS)} [{s.n}]" for s in chosen)
