"""The one error the ingestor's logic raises: a document that can never be indexed."""

from __future__ import annotations

__all__ = ["DocumentRejectedError"]


class DocumentRejectedError(ValueError):
    """A document that can never be chunked, whatever the retries; the message says why.

    The handler turns it into a ``failed`` status carrying the message and a dead letter.
    """
