"""Retrieval quality on the bundled evaluation set: vector-only, BM25-only and hybrid alphas.

``bench/eval/questions.jsonl`` holds questions over ``samples/corpus`` with the ids of the
documents that answer them; ``bench/eval/paraphrases.jsonl`` rewords each of them twice, in other
words than the documents use, which is where keyword and vector search part ways.
``bench/eval/distractors.jsonl`` adds documents on neighbouring topics (another lighthouse, oven
temperatures, Kafka's retention, rerankers, a larger embedding model, the statistician's alpha...)
that share the questions' words or meaning but answer none of them, so that the modes have
something to get wrong. The corpus is ingested through the pipeline into its own tenant (ids
``sample-<file stem>``, as ``ragstream up`` names them), then every question, as written and
reworded, is searched with the retriever's own Weaviate adapter and query model at each alpha,
and the ranked document ids are scored with recall@5, MRR@10 and nDCG@10, per set and pooled.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from bench.pipeline import ingest_documents

__all__ = [
    "ALPHAS",
    "EVAL_TENANT",
    "best_alpha",
    "eval_documents",
    "load_paraphrases",
    "load_questions",
    "reworded_questions",
    "run",
    "score",
    "score_sets",
]

EVAL_TENANT = "bench-eval"
# 1 is vector-only, 0 BM25-only; the rest hybrid. Steps of 0.1, so that the best balance is
# read from the data rather than from a few points chosen beforehand.
ALPHAS = tuple(step / 10 for step in range(11))
QUESTIONS = Path(__file__).resolve().parent / "eval" / "questions.jsonl"
PARAPHRASES = Path(__file__).resolve().parent / "eval" / "paraphrases.jsonl"
DISTRACTORS = Path(__file__).resolve().parent / "eval" / "distractors.jsonl"
CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
# Chunks fetched per question: enough for ten distinct documents in any realistic corpus here.
_CANDIDATES = 50


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    """Return the evaluation questions: ``id``, ``question`` and ``relevant`` doc ids."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_paraphrases(path: Path = PARAPHRASES) -> dict[str, list[str]]:
    """Return the hand-written paraphrases of each evaluation question, by question id."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {entry["id"]: entry["paraphrases"] for entry in map(json.loads, filter(None, lines))}


def reworded_questions(
    questions: list[dict[str, Any]], paraphrases: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Return each question's paraphrases as questions of their own, answered by its documents."""
    return [
        {"id": question["id"], "question": text, "relevant": question["relevant"]}
        for question in questions
        for text in paraphrases.get(question["id"], [])
    ]


def eval_documents(corpus: Path = CORPUS, distractors: Path = DISTRACTORS) -> list[dict[str, str]]:
    """Return the evaluation corpus as JSON-lines documents: the samples and the distractors.

    Sample ids are ``sample-<stem>``, as ``ragstream up`` names them. Every document names its
    file as its source, so publishing the corpus again, unchanged, writes nothing to the index.
    """
    documents = []
    for path in sorted(corpus.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "")
        documents.append(
            {
                "doc_id": f"sample-{path.stem}",
                "title": title or path.stem,
                "content": text,
                "content_type": "text/markdown",
                "source": f"samples/corpus/{path.name}",
            }
        )
    lines = distractors.read_text(encoding="utf-8").splitlines()
    # A line without a source is named after the file it is published from, a new temporary one
    # in every run (``bench.pipeline.ingest_documents``): each run would rewrite the distractors'
    # chunks in the index (a new source is a new version), and BM25's figures with them.
    source = f"bench/eval/{distractors.name}"
    return documents + [{"source": source, **json.loads(line)} for line in lines if line]


async def _rankings(
    questions: list[dict[str, Any]], alphas: tuple[float, ...]
) -> dict[float, list[list[str]]]:
    from ragstream_retriever.adapters.embedding_model import load_query_model
    from ragstream_retriever.adapters.weaviate_index import WeaviateIndex
    from ragstream_retriever.settings import RetrieverSettings

    settings = RetrieverSettings()
    index = WeaviateIndex.from_settings(settings)
    await index.connect()
    try:
        model = await load_query_model(settings.embedding_dimensions, settings.model_threads)
        vectors = await model.embed([q["question"] for q in questions])
        rankings: dict[float, list[list[str]]] = {alpha: [] for alpha in alphas}
        for question, vector in zip(questions, vectors, strict=True):
            for alpha in alphas:
                hits = await index.search(
                    tenant=EVAL_TENANT,
                    text=question["question"],
                    vector=vector,
                    alpha=alpha,
                    limit=_CANDIDATES,
                )
                rankings[alpha].append([hit.doc_id for hit in hits])
        return rankings
    finally:
        await index.close()


def score(rankings: list[list[str]], questions: list[dict[str, Any]]) -> dict[str, float]:
    """Return mean recall@5, MRR@10 and nDCG@10 of ``rankings`` against the questions.

    Args:
        rankings: Per question, the retrieved doc ids best first.
        questions: The questions with their ``relevant`` ids, in the same order.
    """
    pairs = list(zip(rankings, questions, strict=True))
    count = len(pairs)
    return {
        "recall@5": sum(recall_at_k(r, q["relevant"], 5) for r, q in pairs) / count,
        "mrr@10": sum(mrr_at_k(r, q["relevant"], 10) for r, q in pairs) / count,
        "ndcg@10": sum(ndcg_at_k(r, q["relevant"], 10) for r, q in pairs) / count,
    }


def score_sets(
    rankings: dict[float, list[list[str]]], sets: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, dict[str, float]]]:
    """Score each set of questions, and all of them pooled (``"all"``), at each alpha.

    Args:
        rankings: Per alpha, the retrieved doc ids of every question, best first, in the order
            of the sets' questions one set after another.
        sets: The question sets by name, in the order ``rankings`` holds them.
    """
    pooled = [question for group in sets.values() for question in group]
    scored: dict[str, dict[str, dict[str, float]]] = {"all": {}}
    for alpha, ranked in rankings.items():
        scored["all"][f"{alpha:g}"] = score(ranked, pooled)
        start = 0
        for name, questions in sets.items():
            part = ranked[start : start + len(questions)]
            scored.setdefault(name, {})[f"{alpha:g}"] = score(part, questions)
            start += len(questions)
    return scored


def best_alpha(by_alpha: dict[str, dict[str, float]], default: float) -> str:
    """Return the alpha with the best MRR@10 (then nDCG@10); of equals, the one nearest
    ``default``, so that a tie never reads as a reason to move the retriever's setting."""
    return max(
        by_alpha,
        key=lambda alpha: (
            by_alpha[alpha]["mrr@10"],
            by_alpha[alpha]["ndcg@10"],
            -abs(float(alpha) - default),
        ),
    )


def run(*, kafka: str, gateway_url: str, console: Console) -> dict[str, Any]:
    """Index the sample corpus in the evaluation tenant, search every question, score it.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway (status timestamps for the ingest).
        console: Progress output.
    """
    from ragstream_retriever.settings import RetrieverSettings

    questions = load_questions()
    sets = {"as_written": questions, "reworded": reworded_questions(questions, load_paraphrases())}
    queries = [question for group in sets.values() for question in group]
    documents = eval_documents()
    console.print(
        f"[bold]retrieval quality[/]: {len(queries)} questions ({len(questions)} as written, "
        f"{len(sets['reworded'])} reworded) over {len(documents)} documents"
    )
    # Unchanged content re-embeds nothing and writes nothing, so this is cheap after the first run.
    ingest_documents(
        documents, kafka=kafka, gateway_url=gateway_url, tenant=EVAL_TENANT, console=console
    )
    by_set = score_sets(asyncio.run(_rankings(queries, ALPHAS)), sets)
    by_alpha = by_set["all"]
    default = RetrieverSettings().default_alpha
    return {
        "questions": len(queries),
        "question_sets": {name: len(group) for name, group in sets.items()},
        "documents": len(documents),
        "alphas": by_alpha,
        "by_set": {name: by_set[name] for name in sets},
        "vector_only": by_alpha["1"],
        "bm25_only": by_alpha["0"],
        "default_alpha": f"{default:g}",
        "best_alpha": best_alpha(by_alpha, default),
        "notes": (
            "alpha 1 is vector-only, 0 BM25-only. Scored on document ids (a document's chunks "
            "count once, at its best rank); `alphas` pools both sets, `by_set` splits them. "
            "Reworded questions share few words with their documents, as users' questions "
            f"often do. The corpus is small ({len(documents)} documents, one to three chunks "
            "each), so recall@5 is near its ceiling; MRR@10 is the figure that separates the "
            "modes."
        ),
    }
