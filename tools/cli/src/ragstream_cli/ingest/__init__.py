"""``ragstream ingest PATH...``: publish files, folders, globs and JSON lines to ``documents``.

Files found under folders and globs become one document each, with their path (relative to the
folder or the glob's fixed part) as doc id, so that ingesting a tree again re-publishes the same
documents; ``.jsonl``/``.ndjson`` files hold one document a line. The records go straight to Kafka
in the platform's wire format; ``--wait`` then follows ``document-status`` until every document is
indexed or failed, and the summary gives documents/s and chunks/s.

Modules: ``sources`` (finding and reading), ``watch`` (which documents are settled), ``publisher``
(the Kafka run), ``display`` (progress), ``command`` (arguments, summary, exit code).
"""

from __future__ import annotations

from ragstream_cli.ingest.command import DESCRIPTION, add_arguments, run

__all__ = ["DESCRIPTION", "add_arguments", "run"]
