"""Secrets and e-mail addresses never reach a log line: the processor, and logging end to end."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import sys

import pytest

from ragstream_common import redaction
from ragstream_common.logging import configure_logging, get_logger
from ragstream_common.redaction import _TEXT_RULES, REDACTED, redact_event, redact_text

KEY = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


class TestRedactText:
    @pytest.mark.parametrize(
        ("text", "secret"),
        [
            (f"calling provider with {KEY}", KEY),
            ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
            ("redis://:hunter2pass@cache:6379/0", "hunter2pass"),
            ("https://admin:s3cr3tpw@example.org/x", "s3cr3tpw"),
            ("request failed: api_key=abcd1234efgh&model=x", "abcd1234efgh"),
            ('{"password": "correct-horse"}', "correct-horse"),
            ("aws AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
            ("mail jane.doe+rag@example.co.uk about it", "jane.doe+rag@example.co.uk"),
        ],
    )
    def test_secret_is_masked(self, text: str, secret: str) -> None:
        """Each kind of credential, and e-mail addresses, disappear from free text."""
        masked = redact_text(text)
        assert secret not in masked
        assert REDACTED in masked or "[EMAIL]" in masked

    def test_every_rule_applies_whatever_text_surrounds_it(self) -> None:
        """The quick check that skips most texts never skips one a rule would change."""
        fragments = [
            KEY,
            "sk-",
            "Bearer ",
            "bearer abcdefgh12345",
            "redis://",
            "://u:p4ssw0rd@h",
            "@",
            "jane@example.org",
            "AKIAIOSFODNN7EXAMPLE",
            "akia",
            "api_key=",
            "API-KEY: ",
            "secret",
            "Passwd=",
            "password",
            "token:",
            "access-token=",
            "Authorization=",
            "'",
            '"',
            " ",
            "=",
            ":",
            "x",
            "hello",
            "1234",
            "/",
            ";",
            "&",
            "}",
            "\n",
        ]
        rng = random.Random(5)
        for _ in range(5000):
            text = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 8)))
            expected = text
            for pattern, replacement in _TEXT_RULES:
                expected = pattern.sub(replacement, expected)
            assert redact_text(text) == expected, text

    def test_text_no_rule_can_match_skips_the_rules(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Only text holding a fragment some rule needs is run through the rules at all."""
        monkeypatch.setattr(redaction, "_TEXT_RULES", ((re.compile("hello"), "X"),))
        assert redact_text("hello world") == "hello world"
        assert redact_text("hello token") == "X token"

    def test_ordinary_text_is_left_alone(self) -> None:
        """Text without secrets, token counts included, comes back unchanged."""
        text = "answered with 412 prompt tokens at 0.0004 USD; doc_id=guide#3 version=7"
        assert redact_text(text) == text


class TestRedactEvent:
    def test_fields_named_like_secrets_are_masked_whatever_their_value(self) -> None:
        """api_key, client_secret, authorization: masked even when the value looks harmless."""
        event = redact_event(
            None,
            "info",
            {
                "event": "router_built",
                "api_key": "abc",
                "client_secret": "plain",
                "headers": {"Authorization": "Basic dXNlcjpwYXNz", "accept": "json"},
            },
        )
        assert event["api_key"] == REDACTED
        assert event["client_secret"] == REDACTED
        assert event["headers"] == {"Authorization": REDACTED, "accept": "json"}

    def test_counts_named_tokens_are_kept(self) -> None:
        """prompt_tokens and max_tokens count things: numbers stay numbers."""
        event = redact_event(None, "info", {"prompt_tokens": 40, "max_tokens": 512})
        assert event == {"prompt_tokens": 40, "max_tokens": 512}


def test_no_secret_reaches_a_json_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through configure_logging: structlog fields, stdlib messages and tracebacks all masked."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("test-service", json=True)
    try:
        get_logger("t").info("calling", api_key=KEY, user="jane@example.com")
        logging.getLogger("litellm").warning("provider said 401 for key %s", KEY)
        try:
            raise RuntimeError(f"upstream rejected Authorization: Bearer {KEY}")
        except RuntimeError:
            get_logger("t").exception("call_failed")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    text = out.getvalue()
    assert KEY not in text
    assert "jane@example.com" not in text
    assert "RuntimeError" in text  # the traceback is still there, masked
