"""Encryption of secrets at rest with Fernet keys from the environment.

``GATEWAY_ENCRYPTION_KEYS`` lists one or more keys: the first encrypts new
writes, every key decrypts, so keys rotate without downtime.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret was encrypted with a key that is no longer configured."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.GATEWAY_ENCRYPTION_KEYS))


def secret_encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the first configured key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def secret_decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key, or raise ``SecretUnreadable``."""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured encryption key can decrypt this secret") from None


def secret_rotate(ciphertext: str) -> str:
    """Re-encrypt a stored secret with the first configured key."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured encryption key can decrypt this secret") from None
