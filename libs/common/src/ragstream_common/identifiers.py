"""What a tenant name and a document id may look like: one rule for every producer.

The gateway validates requests with these patterns and ``ragstream ingest`` checks files and
JSON lines with them before publishing, so a document is refused the same way whichever door it
comes through.
"""

from __future__ import annotations

import re

__all__ = ["DOC_ID_PATTERN", "TENANT_PATTERN", "is_valid_doc_id", "is_valid_tenant"]

# Tenants become Weaviate tenant names downstream, which allow letters, digits, '_' and '-' only.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# A document id is any 1..256 characters without control characters or surrounding spaces: ids
# are often paths ("guides/setup.md", what ``ragstream ingest`` uses), so they may hold '/'.
DOC_ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,254}[^\s\x00-\x1f\x7f])?$"

_TENANT = re.compile(TENANT_PATTERN)
_DOC_ID = re.compile(DOC_ID_PATTERN)


def is_valid_tenant(tenant: str) -> bool:
    """Return whether ``tenant`` is an acceptable tenant name."""
    return bool(_TENANT.match(tenant))


def is_valid_doc_id(doc_id: str) -> bool:
    """Return whether ``doc_id`` is an acceptable document id."""
    return bool(_DOC_ID.match(doc_id))
