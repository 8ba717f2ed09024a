"""Last-resort error answers for the REST API."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("gateway.api")


class ApiErrorMiddleware:
    """An unexpected exception under /api/ answers 500 ``{"error": ...}``, never a traceback.

    The exception is logged with its type and place, but not the request body,
    which may hold credentials.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return JsonResponse(
            {"error": "Something went wrong on the gateway; the error has been logged."},
            status=500,
        )
