"""What the embedding model reads for a chunk: a contract between the ingestor and the embedder.

The ingestor bounds every chunk so that this text fits the model's word-piece limit, and the
embedder embeds exactly this text; defined once so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HEADING_SEPARATOR", "embedding_text"]

HEADING_SEPARATOR = " > "


def embedding_text(title: str, heading_path: Sequence[str], text: str) -> str:
    """Return what the model reads for a chunk: document title, heading path, then the text.

    Titles and headings are embedded with the text so that a passage is found by the section it
    sits in, not only by its own words. A heading that merely repeats the title is left out.

    Args:
        title: The document's title (may be empty).
        heading_path: The headings above the chunk, outermost first.
        text: The chunk's own text.
    """
    title = title.strip()
    headings = [
        heading.strip()
        for heading in heading_path
        if heading.strip() and heading.strip().casefold() != title.casefold()
    ]
    lines = [title, HEADING_SEPARATOR.join(headings), text.strip()]
    return "\n".join(line for line in lines if line)
