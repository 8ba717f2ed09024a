"""View decorators for the admin UI: a membership, and the admin role for changes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

View = Callable[..., HttpResponse]


def membership_required(*, admin: bool = False) -> Callable[[View], View]:
    """Signed in and a member of the current organisation (an admin when ``admin``)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = getattr(request, "membership", None)
            if membership is None:
                return render(request, "no_organization.html", status=403)
            if admin and not membership.is_admin:
                return render(
                    request,
                    "forbidden.html",
                    {"reason": "Only an organisation admin can do this."},
                    status=403,
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
