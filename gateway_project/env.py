"""Typed readers for settings that come from environment variables.

Each reader returns the default when the variable is unset or empty, and raises
``ImproperlyConfigured`` naming the variable when the value cannot be read, so a
typo in a deployment fails at start-up instead of running with a wrong setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    """A string, stripped of surrounding whitespace."""
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean written as true/false, yes/no, on/off or 1/0."""
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """An integer, optionally bounded."""
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


def env_list(
    name: str, default: list[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str,
    default: str = "",
    *,
    schemes: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> str:
    """A URL whose scheme is one of ``schemes`` and which names a host."""
    value = _raw(name, environ)
    if value is None:
        return default
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        # The value itself is not echoed: URLs like DATABASE_URL carry passwords.
        got = f"a {parts.scheme}:// URL" if parts.scheme else "a value without a scheme"
        raise ImproperlyConfigured(f"{name} must be a {allowed} URL with a host; got {got}")
    return value
