"""Last-resort error answers, and the strict reading of JSON bodies, for Django's side."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError

from gateway_project import strictjson
from gateway_project.api_errors import is_machine_path, oauth_error_code

logger = logging.getLogger("gateway.api")

# The caller's mistakes, which Django turns into 400/403/404 (api_errors' handlers).
_CLIENT_ERRORS = (Http404, PermissionDenied, MultiPartParserError, BadRequest, SuspiciousOperation)


class ApiErrorMiddleware:
    """An unexpected exception on a path machines call (the API, MCP, OAuth) answers
    500 ``{"error": ...}``, never a traceback page.

    The exception is logged with its type and place, but not the request body,
    which may hold credentials.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_machine_path(request.path) or isinstance(exception, _CLIENT_ERRORS):
            return None  # Django answers these itself, through urls.py's handlers
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return JsonResponse(
            {"error": "Something went wrong on the gateway; the error has been logged."},
            status=500,
        )


class ApiMethodNotAllowedMiddleware:
    """A method an API view does not serve answers 405 before authentication.

    DRF checks permissions before it looks for the method's handler, so a member's
    ``TRACE`` would be told 403 (not allowed by role) rather than 405 (no such method).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], *args: Any
    ) -> HttpResponse | None:
        view_class = getattr(view_func, "cls", None)  # set by APIView.as_view()
        method = (request.method or "").lower()
        if view_class is None or not request.path.startswith("/api/") or method == "options":
            return None
        served = method if method != "head" else "get"  # Django serves HEAD with GET
        if method in view_class.http_method_names and hasattr(view_class, served):
            return None
        allowed = [
            name.upper()
            for name in view_class.http_method_names
            if hasattr(view_class, name) and name != "options"
        ]
        response = JsonResponse(
            {"error": f"Method {request.method} is not allowed here."}, status=405
        )
        response["Allow"] = ", ".join(allowed)
        return response


class StrictJsonBodyMiddleware:
    """A JSON body outside the REST API is parsed once with the gateway's strict parser
    before any view sees it, and refused with 400 when it is not acceptable.

    The OAuth views (registration and its management, which django-oauth-toolkit
    parses with the standard library) would otherwise meet lone surrogates, or a body
    nested thousands deep that ends in ``RecursionError``. The REST API is left to its
    DRF parser, which uses the same strict parser and answers in the API's shape.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method in ("POST", "PUT", "PATCH", "DELETE")
            and not request.path.startswith("/api/")
            and "json" in (request.content_type or "")
        ):
            body = request.body
            if body:
                try:
                    strictjson.loads(body)
                except strictjson.JsonRefused as refused:
                    return _refused(request, f"The request body is not acceptable JSON: {refused}.")
        return self.get_response(request)


def _refused(request: HttpRequest, message: str) -> JsonResponse:
    code = oauth_error_code(request.path)
    if code is not None:  # RFC 6749 / RFC 7591 error shape, which also has "error"
        return JsonResponse({"error": code, "error_description": message}, status=400)
    return JsonResponse({"error": message}, status=400)
