"""Keep credentials out of the activity log; pure Python, cheap on small payloads.

Two kinds of values are replaced by ``[REDACTED]`` before a record is written
(to the spool or the database):

- *known secrets*: the credential values of the process's connections (bearer
  tokens, header values, stdio environment values), registered when a target is
  built and refreshed from the database by the background writer;
- *token-shaped strings*: bearer headers, JWTs, the credentials this gateway
  issues (``gwt_`` API tokens, ``gwto_`` / ``gwtr_`` OAuth access and refresh
  tokens) and the well-known prefixed formats (``sk-``, ``ghp_``, ``xoxb-``,
  ``AKIA``…), whatever their origin.

Secrets shorter than ``MIN_SECRET_LENGTH`` are not registered: replacing a
four-letter value everywhere would wreck the log without protecting much.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

import ahocorasick

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8

# Token shapes, each with the literal text it must contain: a pattern runs only when its
# literal is in the text (a substring test at C speed), so a call without any of them
# costs a handful of ``in`` checks, not a regular expression over the whole payload.
_TOKEN_SHAPES: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    (("earer", "EARER"), re.compile(r"(?i:bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*")),
    (("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    # What this gateway issues: API tokens, OAuth access and refresh tokens, all
    # starting "gwt" (gateway_project.token_shapes); also right after an underscore.
    (("gwt",), re.compile(r"(?<![A-Za-z0-9])gwt[or]?_[A-Za-z0-9_-]{16,}")),
    (("sk-",), re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}")),  # OpenAI, Anthropic
    (("gh",), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}")),
    (("glpat-",), re.compile(r"\bglpat-[A-Za-z0-9_-]{16,}")),  # GitLab
    (("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),  # Slack
    (("AKIA", "ASIA"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),  # AWS access key id
    (("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),  # Google API key
    (("k_live_", "k_test_"), re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}")),  # Stripe
]


class Redactor:
    """Replaces known secret values and token-shaped strings; safe to share between threads.

    Known secrets are found in one pass whatever their number, with an Aho-Corasick
    automaton (``pyahocorasick``, in C): with a personal credential per user the set
    holds thousands of values, and a substring test per value would cost the request
    path 80 µs per text at a thousand of them (3 µs with the automaton). The
    automaton is rebuilt off the hot path when the set changes and swapped whole.

    The set stays bounded: ``replace`` (the background refresh from the database)
    keeps the stored credentials plus what was registered in the last
    ``RECENT_SECONDS``, so a token that was refreshed away leaves it.
    """

    RECENT_SECONDS = 600.0

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._automaton: Any = None
        self._recent: dict[str, float] = {}  # form -> when it was registered
        self._lock = threading.Lock()
        self.longest = 0

    @staticmethod
    def _forms(value: str) -> set[str]:
        # The value as it appears in raw text and inside JSON text (escaped).
        forms = {value}
        forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        forms.add(json.dumps(value)[1:-1])
        return forms

    @classmethod
    def _clean(cls, values: Iterable[str]) -> set[str]:
        return {
            form
            for value in values
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH
            for form in cls._forms(value)
        }

    def _install(self, secrets: frozenset[str]) -> None:
        automaton: Any = None
        if secrets:
            automaton = ahocorasick.Automaton()
            for secret in secrets:
                automaton.add_word(secret, len(secret))
            automaton.make_automaton()
        self._secrets, self._automaton = secrets, automaton
        self.longest = max(map(len, secrets), default=0)

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (short ones are ignored)."""
        new = self._clean(values)
        if new <= self._secrets:
            return
        with self._lock:
            now = time.monotonic()
            for form in new - self._secrets:
                self._recent[form] = now
            self._install(self._secrets | new)

    def replace(self, values: Iterable[str]) -> None:
        """The secrets are now ``values`` plus those registered lately."""
        current = self._clean(values)
        with self._lock:
            horizon = time.monotonic() - self.RECENT_SECONDS
            self._recent = {form: at for form, at in self._recent.items() if at > horizon}
            wanted = frozenset(current | self._recent.keys())
            if wanted != self._secrets:
                self._install(wanted)

    def redact(self, text: str) -> tuple[str, bool]:
        """The text with secrets replaced, and whether anything was."""
        if not text:
            return text, False
        changed = False
        automaton = self._automaton
        if automaton is not None:
            # Leftmost-longest matches, in order and not overlapping.
            found = list(automaton.iter_long(text))
            if found:
                parts, position = [], 0
                for end, length in found:
                    parts.append(text[position : end + 1 - length])
                    parts.append(REDACTED)
                    position = end + 1
                parts.append(text[position:])
                text, changed = "".join(parts), True
        for literals, pattern in _TOKEN_SHAPES:
            for literal in literals:
                if literal in text:
                    text, count = pattern.subn(REDACTED, text)
                    changed = changed or count > 0
                    break
        return text, changed


redactor = Redactor()


def secret_values_register(values: Iterable[str]) -> None:
    """Tell the activity log about credential values it must never write."""
    redactor.add(values)
