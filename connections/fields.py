"""A model field that keeps a JSON value encrypted at rest."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import models

from connections.crypto import SecretUnreadable, secret_decrypt, secret_encrypt

logger = logging.getLogger(__name__)


class UnreadableSecret:
    """A stored secret that no configured key decrypts.

    It keeps the ciphertext so that saving the row again writes it back
    unchanged: a missing key must never destroy a credential.
    """

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "<UnreadableSecret>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class EncryptedJSONField(models.TextField[Any, Any]):
    """Stores ``json.dumps(value)`` encrypted with the gateway's Fernet keys.

    The column holds only ciphertext; the plaintext exists in memory only.
    """

    # Tell django-stubs the Python-side type: any JSON value, not str.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return None
        try:
            return json.loads(secret_decrypt(value))
        except SecretUnreadable:
            logger.warning(
                "A stored secret (%s) cannot be decrypted with the configured keys", self
            )
            return UnreadableSecret(value)

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, UnreadableSecret):
            return value.ciphertext
        return secret_encrypt(json.dumps(value, separators=(",", ":")))

    def to_python(self, value: Any) -> Any:
        return value
