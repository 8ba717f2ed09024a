"""Template context: the current membership and the organisations to switch to."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from oauth.selectors import membership_list_for_user


def organization(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {"membership": None, "memberships": []}
    return {
        "membership": membership,
        "memberships": membership_list_for_user(user=request.user),
    }
