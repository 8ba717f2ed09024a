"""Keep credentials out of the activity log; pure Python, cheap on small payloads.

Two kinds of values are replaced by ``[REDACTED]`` before a record is written
(to the spool or the database):

- *known secrets*: the credential values of the process's connections (bearer
  tokens, header values, stdio environment values), registered when a target is
  built and refreshed from the database by the background writer;
- *token-shaped strings*: bearer headers, JWTs and the well-known prefixed
  formats (``gwt_``, ``sk-``, ``ghp_``, ``xoxb-``, ``AKIA``…), whatever their origin.

Secrets shorter than ``MIN_SECRET_LENGTH`` are not registered: replacing a
four-letter value everywhere would wreck the log without protecting much.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8

_TOKEN_SHAPES = [
    r"(?i:bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"\bgwt_[A-Za-z0-9_-]{16,}",  # this gateway's API tokens
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bglpat-[A-Za-z0-9_-]{16,}",  # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
]


class Redactor:
    """Replaces known secret values and token-shaped strings; thread-safe to use.

    The pattern is rebuilt when the set of secrets changes (rarely); ``redact``
    itself only runs one compiled regular expression over the text.
    """

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._pattern = self._compile(self._secrets)

    @staticmethod
    def _compile(secrets: Iterable[str]) -> re.Pattern[str]:
        # Longest first, so a secret containing another is replaced whole.
        literal = [re.escape(s) for s in sorted(secrets, key=len, reverse=True)]
        return re.compile("|".join([*literal, *_TOKEN_SHAPES]))

    @staticmethod
    def _forms(value: str) -> set[str]:
        # The value as it appears in raw text and inside JSON text (escaped).
        forms = {value}
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        forms.add(escaped)
        forms.add(json.dumps(value)[1:-1])
        return forms

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (short ones are ignored)."""
        new = {
            form
            for value in values
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH
            for form in self._forms(value)
        }
        if new <= self._secrets:
            return
        with self._lock:
            merged = self._secrets | new
            self._pattern = self._compile(merged)
            self._secrets = merged

    def replace_all(self, values: Iterable[str]) -> None:
        """Make ``values`` the registered secrets (a full refresh from the database)."""
        fresh = frozenset(
            form
            for value in values
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH
            for form in self._forms(value)
        )
        if fresh == self._secrets:
            return
        with self._lock:
            self._pattern = self._compile(fresh)
            self._secrets = fresh

    @property
    def longest(self) -> int:
        return max((len(s) for s in self._secrets), default=0)

    def redact(self, text: str) -> tuple[str, bool]:
        """The text with secrets replaced, and whether anything was."""
        if not text:
            return text, False
        pattern = self._pattern
        if pattern.search(text) is None:
            return text, False
        return pattern.sub(REDACTED, text), True


redactor = Redactor()


def secret_values_register(values: Iterable[str]) -> None:
    """Tell the activity log about credential values it must never write."""
    redactor.add(values)
