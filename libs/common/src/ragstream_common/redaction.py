"""Keeps secrets and personal data out of the logs: a structlog processor, applied last.

Two nets, because a secret reaches a log line either under a telling name (``api_key=...``) or
inside free text (an exception from an HTTP client quoting its request, a URL with a password in
it). The first replaces the value of any field whose name says it holds a secret; the second
rewrites strings wherever they are: e-mail addresses, bearer tokens, provider keys (``sk-...``,
``AKIA...``), ``key=value`` pairs with a secret-sounding key, and passwords in URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["REDACTED", "redact_event", "redact_text"]

REDACTED = "[REDACTED]"

# A field named like a secret: api_key, x-api-key, client_secret, password, authorization,
# access_token... but not prompt_tokens or max_tokens, which count things.
_SECRET_FIELD = re.compile(
    r"(?i)(^|[_-])(api[_-]?key|secret|password|passwd|pwd|token|authorization|credentials?|"
    r"private[_-]?key|access[_-]?key|session[_-]?key|cookie)($|[_-])"
)

_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in URLs (redis://:secret@host, https://user:secret@host).
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\bbearer\s+[a-z0-9._~+/=-]{8,}"), f"Bearer {REDACTED}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    # api_key=..., "password": "...", token: ... inside free text.
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|secret|password|passwd|access[_-]?token|token|"
            r"authorization)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]{4,})"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
)


# Each rule above matches only text holding one of these. Most values on a log line hold none,
# and one search for them costs a sixth of running every rule (half of a log line's CPU).
_MAY_HOLD_SECRET = re.compile(
    r"(?i)://|@|bearer|sk-|akia|api[_-]?key|secret|passw|token|authorization"
)


def redact_text(text: str) -> str:
    """Return ``text`` with e-mail addresses and anything that looks like a credential masked."""
    if not _MAY_HOLD_SECRET.search(text):
        return text
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED if _SECRET_FIELD.search(name) else redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(name, item) for item in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    # Anything else is rendered as its text by the JSON renderer; mask that text now.
    return redact_text(str(value))


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: mask secrets and e-mail addresses in every field of the event.

    Runs after exceptions are formatted, so tracebacks are masked too.
    """
    return {name: _redact_value(name, value) for name, value in event_dict.items()}
