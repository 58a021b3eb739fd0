"""The generator's logic as plain functions: the prompt, its parser, citations, the answer event.

The prompt has one format, written by ``build_messages`` and read back by ``parse_messages`` (the
local extractive model reads its question and passages from the messages LiteLLM hands it). Both
use the constants below, so the writer and the reader cannot drift apart.

Retrieved text is untrusted: a document may contain "ignore your instructions and ...". It goes
into the prompt fenced as DATA, each passage between ``<passage>`` tags that the text itself cannot
forge (see ``_neutralise``), and both the system prompt and the user prompt tell the model never
to follow instructions found inside passages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ragstream_common.events import (
    AnswerCompleted,
    Citation,
    ContextRetrieved,
    RetrievedChunk,
    Usage,
)
from ragstream_generator.prompts import NOT_FOUND_SENTENCE, PromptTemplate, load_prompt

__all__ = [
    "APOLOGY_ANSWER",
    "NOT_FOUND_ANSWER",
    "NO_CONTEXT_ANSWER",
    "NO_MODEL",
    "SNIPPET_CHARS",
    "ParsedPrompt",
    "Passage",
    "build_messages",
    "cited_numbers",
    "completed_answer",
    "extract_citations",
    "fit_to_budget",
    "mark_support",
    "parse_messages",
    "passage_title",
    "relevant_chunks",
    "snippet",
    "word_count",
]

# The ``model`` of an answer no model wrote (no context, or every deployment failed).
NO_MODEL = "none"

# No passages were retrieved at all: the index holds nothing about the question.
NO_CONTEXT_ANSWER = "I could not find anything about this in the indexed documents."
# Passages were retrieved but none of them answers the question.
NOT_FOUND_ANSWER = NOT_FOUND_SENTENCE
# Every deployment failed; the event's ``error`` says why.
APOLOGY_ANSWER = (
    "Sorry, I could not generate an answer right now because the language model is unavailable. "
    "Please try again shortly."
)

# About three lines of text: enough for a reader to see why the source was cited.
SNIPPET_CHARS = 300

# The format of the user message. The tags are what the parser looks for; see ``_neutralise``
# for why the text between them can never contain one.
_QUESTION_OPEN = "<question>"
_QUESTION_CLOSE = "</question>"
_PASSAGE_OPEN = '<passage n="{n}" title="{title}">'
_PASSAGE_CLOSE = "</passage>"
_QUESTION_RE = re.compile(
    re.escape(_QUESTION_OPEN) + r"\n(?P<question>.*?)\n" + re.escape(_QUESTION_CLOSE), re.DOTALL
)
_PASSAGE_RE = re.compile(
    re.escape(_PASSAGE_OPEN)
    .replace(re.escape("{n}"), r"(?P<n>\d+)")
    .replace(re.escape("{title}"), r'(?P<title>[^"\n]*)')
    + r"\n(?P<text>.*?)\n"
    + re.escape(_PASSAGE_CLOSE),
    re.DOTALL,
)
# Anything that could open or close one of our tags, whatever its case or spacing.
_TAG_LIKE_RE = re.compile(r"<(\s*/?\s*)(passage|question)", re.IGNORECASE)
# [3], and the grouped forms models also write: [1, 3] and [1][3] (two matches).
_MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WHITESPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    """One numbered passage as it appears in the prompt.

    Args:
        n: Its [n] marker, counted from 1 in rank order.
        title: The document title (and section path) shown to the model.
        text: The passage text, as fenced in the prompt.
    """

    n: int
    title: str
    text: str


@dataclass(frozen=True)
class ParsedPrompt:
    """The question and the passages read back from a prompt that ``build_messages`` wrote."""

    question: str
    passages: tuple[Passage, ...]


def word_count(text: str) -> int:
    """Return the number of whitespace-separated words in ``text`` (our cheap token estimate)."""
    return len(text.split())


def fit_to_budget(chunks: Sequence[RetrievedChunk], max_words: int) -> list[RetrievedChunk]:
    """Keep chunks in rank order until ``max_words`` of text are spent.

    The chunk that crosses the budget is cut at a word boundary, so the best-ranked text always
    goes in; the ones after it are dropped. Citation numbers index the returned list, so the
    caller passes the same list to ``build_messages`` and ``extract_citations``.

    Args:
        chunks: The retrieved chunks, best first.
        max_words: The prompt's budget for retrieved text, in words.
    """
    kept: list[RetrievedChunk] = []
    remaining = max_words
    for chunk in chunks:
        words = chunk.text.split()
        if len(words) <= remaining:
            kept.append(chunk)
            remaining -= len(words)
            continue
        if remaining > 0:
            kept.append(chunk.model_copy(update={"text": " ".join(words[:remaining]) + " …"}))
        break
    return kept


def passage_title(chunk: RetrievedChunk) -> str:
    """Return the title shown for ``chunk``: the document title, then its section path."""
    parts = [chunk.title.strip() or chunk.doc_id, *(h.strip() for h in chunk.heading_path)]
    return " > ".join(part for part in parts if part)


def build_messages(
    question: str, chunks: Sequence[RetrievedChunk], template: PromptTemplate | None = None
) -> list[dict[str, str]]:
    """Return the chat messages asking ``question`` over ``chunks``, fenced as numbered data.

    Args:
        question: The user's question.
        chunks: The passages to answer from, best first; passage [n] is ``chunks[n - 1]``.
        template: The prompt's wording; the packaged default version when None.
    """
    template = template or load_prompt()
    passages = [
        "\n".join(
            (
                _PASSAGE_OPEN.format(n=n, title=_attribute(passage_title(chunk))),
                _neutralise(chunk.text.strip()),
                _PASSAGE_CLOSE,
            )
        )
        for n, chunk in enumerate(chunks, start=1)
    ]
    user = "\n\n".join(
        (
            f"{_QUESTION_OPEN}\n{_neutralise(question.strip())}\n{_QUESTION_CLOSE}",
            template.data_header,
            "\n".join(passages),
            template.footer,
        )
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def parse_messages(messages: Sequence[Mapping[str, object]]) -> ParsedPrompt:
    """Read the question and passages back from messages that ``build_messages`` wrote.

    Messages in any other shape still parse: the last user message becomes the question and
    there are no passages.

    Args:
        messages: Chat messages (``role`` and ``content``), as LiteLLM passes them on.
    """
    user_texts = [
        message["content"]
        for message in messages
        if message.get("role") == "user" and isinstance(message.get("content"), str)
    ]
    if not user_texts:
        return ParsedPrompt(question="", passages=())
    content = str(user_texts[-1])
    question_match = _QUESTION_RE.search(content)
    if question_match is None:
        return ParsedPrompt(question=content.strip(), passages=())
    passages = tuple(
        Passage(n=int(match["n"]), title=match["title"], text=match["text"])
        for match in _PASSAGE_RE.finditer(content, question_match.end())
    )
    return ParsedPrompt(question=question_match["question"], passages=passages)


def cited_numbers(answer_text: str) -> list[int]:
    """Return the [n] numbers in ``answer_text``, each once, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in _MARKER_RE.finditer(answer_text):
        for number in match.group(1).split(","):
            seen.setdefault(int(number), None)
    return list(seen)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Return ``text`` with whitespace collapsed, cut at a word boundary to about ``limit`` chars."""
    flat = _WHITESPACE_RE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    # Cut at the last space unless that would throw most of the snippet away (one long token).
    if (space := cut.rfind(" ")) > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def extract_citations(answer_text: str, chunks: Sequence[RetrievedChunk]) -> list[Citation]:
    """Map the [n] markers the answer actually uses to the passages they name.

    Markers are taken in order of first appearance; a number that names no passage (a model
    inventing [9] of five) is dropped rather than pointed at the wrong source.

    Args:
        answer_text: The model's answer.
        chunks: The passages the prompt numbered, in the same order.
    """
    citations = []
    for n in cited_numbers(answer_text):
        if not 1 <= n <= len(chunks):
            continue
        chunk = chunks[n - 1]
        citations.append(
            Citation(
                n=n,
                doc_id=chunk.doc_id,
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                snippet=snippet(chunk.text),
                score=chunk.score,
            )
        )
    return citations


def completed_answer(
    context: ContextRetrieved,
    *,
    answer: str,
    citations: Sequence[Citation],
    model: str,
    generate_ms: float,
    error: str | None = None,
    groundedness: float | None = None,
    usage: Usage | None = None,
    prompt_version: str | None = None,
    attempts: Sequence[str] = (),
) -> AnswerCompleted:
    """Return the answer event for ``context``, routed to the gateway replica that asked.

    Args:
        context: The retrieved context being answered.
        answer: The answer text.
        citations: The sources the answer cites.
        model: The deployment that answered, or ``NO_MODEL``.
        generate_ms: Time this service spent on the answer, in milliseconds.
        error: Why no model could answer, when none could.
        groundedness: The answer's support score, in [0, 1].
        usage: Tokens and cost of every model call behind the answer.
        prompt_version: The prompt template's version, when a prompt was sent.
        attempts: The deployments called, in order, the answering one last.
    """
    query = context.query
    return AnswerCompleted(
        query_id=query.query_id,
        tenant=query.tenant,
        reply_to=query.reply_to,
        answer=answer,
        citations=list(citations),
        model=model,
        cached=False,
        timings={**context.timings, "generate_ms": round(generate_ms, 3)},
        error=error,
        groundedness=groundedness,
        usage=usage,
        prompt_version=prompt_version,
        attempts=list(attempts),
    )


def relevant_chunks(chunks: Sequence[RetrievedChunk], min_relevance: float) -> list[RetrievedChunk]:
    """Return the chunks scoring at least ``min_relevance``, in their order.

    Args:
        chunks: The retrieved chunks.
        min_relevance: The lowest score that still counts as evidence.
    """
    return [chunk for chunk in chunks if chunk.score >= min_relevance]


def mark_support(citations: Sequence[Citation], supported: Mapping[int, bool]) -> list[Citation]:
    """Return ``citations`` with ``supported`` set from the groundedness check.

    Args:
        citations: The answer's citations.
        supported: Whether each cited n holds; an n missing from it stays None (unchecked).
    """
    return [
        citation.model_copy(update={"supported": supported.get(citation.n)})
        for citation in citations
    ]


def _neutralise(text: str) -> str:
    # A passage that contained "</passage>" could close its fence early and pose the rest of its
    # text as our own prompt (and would break the parser); escaping the "<" keeps it readable.
    return _TAG_LIKE_RE.sub(lambda match: "&lt;" + match.group(1) + match.group(2), text)


def _attribute(value: str) -> str:
    # The title sits inside a quoted attribute on one line: no quotes, no line breaks, no tags.
    return _neutralise(_WHITESPACE_RE.sub(" ", value).replace('"', "'")).strip()
