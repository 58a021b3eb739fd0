"""Groundedness: how much of an answer the retrieved passages support, sentence by sentence.

Each sentence of the answer (``[n]`` markers stripped) is reduced to its content terms, the same
stems the extractive model matches on (lowercased, stop words dropped, suffixes stripped). A
sentence is supported when at least ``threshold`` of its terms occur in the passages it cites, or
in any passage when it cites none. The answer's groundedness is the share of supported sentences;
a sentence without content terms, or the does-not-know sentence, claims nothing and is not
counted, and an answer that claims nothing scores 1.0 (so a model that declines is not escalated
for it: declining is the prompt's instruction when the passages lack the answer). A citation [n] is supported when n names a
passage and every sentence citing it is supported by that passage alone.

Lexical overlap is a cheap proxy, not entailment: it catches invented facts and citations pointing
at the wrong passage, not a paraphrase that reverses a passage's meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ragstream_generator.domain import NOT_FOUND_ANSWER, cited_numbers
from ragstream_generator.extractive import content_terms

__all__ = ["DEFAULT_SUPPORT_THRESHOLD", "Groundedness", "answer_sentences", "assess"]

DEFAULT_SUPPORT_THRESHOLD = 0.6

_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
_LEADING_MARKERS_RE = re.compile(r"^((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)")
_MARKER_RE = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


@dataclass(frozen=True)
class Groundedness:
    """The support check of one answer.

    Args:
        score: Supported sentences over sentences that claim something, in [0, 1].
        sentences: How many sentences claimed something.
        supported_citations: For each cited n, whether that citation holds (see the module).
    """

    score: float
    sentences: int
    supported_citations: Mapping[int, bool]


def answer_sentences(answer: str) -> list[str]:
    """Split ``answer`` into sentences, each keeping the [n] markers that follow it.

    Args:
        answer: A model's answer, citing passages as [n].
    """
    sentences: list[str] = []
    for piece in _SENTENCE_END_RE.split(answer.strip()):
        # "Foo. [1] Bar." splits as "Foo." and "[1] Bar.": the marker belongs to "Foo.".
        if sentences and (leading := _LEADING_MARKERS_RE.match(piece)):
            sentences[-1] = f"{sentences[-1]} {leading.group(1).strip()}"
            piece = piece[leading.end() :]
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def _coverage(terms: set[str], passage_terms: set[str]) -> float:
    return len(terms & passage_terms) / len(terms)


def assess(
    answer: str, passages: Sequence[str], threshold: float = DEFAULT_SUPPORT_THRESHOLD
) -> Groundedness:
    """Check every sentence of ``answer`` against the passages it cites.

    Args:
        answer: The answer text with [n] markers.
        passages: The passages' texts; passage [n] is ``passages[n - 1]``.
        threshold: The share of a sentence's content terms a passage must hold to support it.
    """
    passage_terms = [set(content_terms(text)) for text in passages]
    all_terms = set().union(*passage_terms)
    claims = 0
    supported = 0
    citation_ok: dict[int, bool] = {}
    for sentence in answer_sentences(answer):
        plain = _MARKER_RE.sub(" ", sentence).strip()
        if plain == NOT_FOUND_ANSWER:
            continue
        terms = set(content_terms(plain))
        cited = cited_numbers(sentence)
        valid = [n for n in cited if 1 <= n <= len(passages)]
        for n in cited:
            holds = (
                n in valid and bool(terms) and (_coverage(terms, passage_terms[n - 1]) >= threshold)
            )
            citation_ok[n] = citation_ok.get(n, True) and (holds or not terms)
        if not terms:
            continue
        claims += 1
        if cited:
            evidence = set().union(*(passage_terms[n - 1] for n in valid)) if valid else set()
        else:
            evidence = all_terms
        if _coverage(terms, evidence) >= threshold:
            supported += 1
    for n in citation_ok:
        if not 1 <= n <= len(passages):
            citation_ok[n] = False
    score = supported / claims if claims else 1.0
    return Groundedness(score=score, sentences=claims, supported_citations=citation_ok)
