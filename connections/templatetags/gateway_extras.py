"""Template filters of the admin UI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    """A JSON value indented for reading (autoescaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, for people: "just now" under a minute, else "5 minutes ago"."""
    if value is None:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """``mapping[key]`` in a template (None when absent)."""
    return mapping.get(key) if isinstance(mapping, dict) else None
