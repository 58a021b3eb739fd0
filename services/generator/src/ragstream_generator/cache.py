"""The answer caches' rules, as pure functions, and the port their store implements.

Two caches, both scoped per tenant and both unable to serve an answer whose cited documents
changed or were deleted:

* exact: keyed by a hash of the tenant, model groups, prompt version and the whole prompt, its
  question normalised (case, spacing and closing punctuation; ``normalise_question``). The
  prompt holds the retrieved passages' text, so a changed or deleted passage changes the key and
  misses by construction.
* semantic: the most similar earlier question of the same tenant (cosine of the query vectors
  the retriever publishes, at least a threshold). Its prompt differed, so its key proves nothing;
  it is served only when every chunk its answer cites is among the chunks retrieved now (and
  retrieval ranks the same chunk first, so a near-identical question about another thing misses). Chunk ids
  are content-addressed (``{doc_id}#{hash16}``): an edited chunk gets a new id and a deleted one
  is no longer retrieved, so either way the cached answer is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ragstream_common.events import Citation, RetrievedChunk

__all__ = [
    "AnswerCache",
    "CacheKind",
    "CachedAnswer",
    "best_semantic_match",
    "cosine",
    "exact_key",
    "is_servable",
    "normalise_question",
]

CacheKind = Literal["exact", "semantic"]


class CachedAnswer(BaseModel):
    """An answer as stored: what the caller sees again, and what decides whether it still holds.

    Args:
        answer: The answer text.
        citations: Its citations; their ``chunk_id`` are the safety rule's input.
        model: The deployment that wrote it.
        groundedness: Its support score when it was written.
        prompt_version: The prompt template it was written with.
        query_vector: The question's embedding, for the semantic lookup (None: exact only).
        top_chunk_id: The chunk retrieval ranked first for the question.
    """

    model_config = ConfigDict(frozen=True)

    answer: str
    citations: list[Citation]
    model: str
    groundedness: float | None = None
    prompt_version: str | None = None
    query_vector: list[float] | None = Field(default=None, repr=False)
    top_chunk_id: str | None = None


_SPACES = re.compile(r"\s+")
# Closing punctuation a retyped question drops or adds (after NFKC, so full-width forms are
# these, and the ideographic full stop); inner punctuation may carry meaning.
_CLOSING = "?!. \u3002"


def normalise_question(text: str) -> str:
    """Return ``text`` as the exact cache compares questions: the same question retyped keys the
    same.

    Case (the embedding model and BM25 both read lower case, so retrieval is the same), runs of
    whitespace and closing punctuation are dropped; every word stays as it was, so a question
    differing by one word still misses.

    Args:
        text: The question as asked.
    """
    folded = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    return folded.rstrip(_CLOSING)


def exact_key(
    tenant: str, model_group: str, prompt_version: str, messages: Sequence[Mapping[str, str]]
) -> str:
    """Return the exact cache's key: a hash of everything that decides the model's reply.

    Args:
        tenant: The asking tenant; two tenants never share an entry, even for the same prompt.
        model_group: The model group(s) asked, e.g. the cascade's tiers joined.
        prompt_version: The prompt template's version.
        messages: The chat that would be sent to the model, retrieved passages included, built
            with the question as ``normalise_question`` returns it.
    """
    payload = json.dumps(
        [tenant, model_group, prompt_version, [dict(m) for m in messages]],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    """Return the cosine similarity of two vectors; 0.0 when either is zero or their sizes differ.

    Args:
        left: A vector.
        right: Another vector.
    """
    if len(left) != len(right) or not left:
        return 0.0
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norms = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norms if norms else 0.0


def is_servable(entry: CachedAnswer, chunks: Iterable[RetrievedChunk]) -> bool:
    """Whether every chunk ``entry`` cites is among ``chunks``, the chunks retrieved now.

    An answer citing nothing is never served from the semantic cache: nothing would tie it to
    the current documents.

    Args:
        entry: A cached answer.
        chunks: The current retrieval's chunks.
    """
    cited = {citation.chunk_id for citation in entry.citations}
    return bool(cited) and cited <= {chunk.chunk_id for chunk in chunks}


def best_semantic_match(
    entries: Iterable[CachedAnswer],
    query_vector: Sequence[float],
    chunks: Sequence[RetrievedChunk],
    threshold: float,
) -> CachedAnswer | None:
    """Return the most similar servable entry at or above ``threshold``, or None.

    Besides the safety rule, retrieval must rank the same chunk first now as it did for the
    cached question: questions differing in one name ("station 8" and "station 9") embed above
    any useful threshold, but retrieval ranks a different passage first for each, so the
    other's answer is refused.

    Entries are one tenant's (the store scopes them); brute force is fine because the store
    keeps only the most recent few hundred per tenant, a few milliseconds of arithmetic.

    Args:
        entries: The tenant's recent cached answers.
        query_vector: The current question's embedding.
        chunks: The current retrieval's chunks.
        threshold: The least cosine similarity that counts as the same question.
    """
    best: CachedAnswer | None = None
    best_score = threshold
    for entry in entries:
        if entry.query_vector is None:
            continue
        score = cosine(entry.query_vector, query_vector)
        if score >= best_score and is_servable(entry, chunks) and _same_top(entry, chunks):
            best, best_score = entry, score
    return best


def _same_top(entry: CachedAnswer, chunks: Sequence[RetrievedChunk]) -> bool:
    return bool(chunks) and entry.top_chunk_id == chunks[0].chunk_id


class AnswerCache(Protocol):
    """Where cached answers live, shared by every replica; scoped by tenant."""

    async def get_exact(self, tenant: str, key: str) -> CachedAnswer | None:
        """Return the answer stored under ``key`` for ``tenant``, or None."""
        ...

    async def recent(self, tenant: str) -> list[CachedAnswer]:
        """Return ``tenant``'s most recent answers with a query vector, newest first."""
        ...

    async def put(self, tenant: str, key: str, entry: CachedAnswer) -> None:
        """Store ``entry`` under ``key`` and among ``tenant``'s recent answers."""
        ...
