"""One error shape for the whole REST API: ``{"error": "<message>", "details"?: {...}}``.

Django's own error pages (400, 403, 404, 500) answer in the same shape on the paths
machines call (the API, MCP, OAuth and discovery); the UI keeps its HTML pages.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ErrorSerializer(serializers.Serializer[Any]):
    """The error body of every API answer (one "Error" component in the schema)."""

    error = serializers.CharField()
    details = serializers.DictField(required=False)


class StrictInputSerializer(serializers.Serializer[Any]):
    """An input body whose unknown fields are errors (400, named in ``details``),
    so a misspelt field is never silently ignored, and whose values must have the
    JSON type the field declares: DRF would otherwise read ``"slug": 0`` as ``"0"``,
    ``"piiFilter": 0`` as false and ``"memberIds": ["7"]`` as ``[7]``, none of which
    the schema allows."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = {
                name: error
                for name, field in self.fields.items()
                if name in data and (error := _type_error(field, data[name])) is not None
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = (
            sorted(set(self.initial_data) - set(self.fields))
            if isinstance(self.initial_data, dict)
            else []
        )
        if unknown:
            raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        return attrs


def _type_error(field: serializers.Field[Any, Any, Any, Any], value: Any) -> Any:
    """DRF-style error details when ``value`` is not of the JSON type ``field`` declares,
    else None (null and the field's own rules are left to the field)."""
    if value is None or field.read_only:
        return None
    # DRF's own wording for a value of the wrong type, where it has one.
    invalid = [str(field.error_messages.get("invalid", "Not a valid value."))]
    whole = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else invalid
    if isinstance(field, serializers.IntegerField):
        return None if whole else invalid
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        return None if whole or isinstance(value, float) else invalid
    if isinstance(field, serializers.CharField):
        return None if isinstance(value, str) else ["Not a valid string."]
    if isinstance(field, serializers.ChoiceField):
        choices = list(field.choices)
        if choices and all(isinstance(choice, str) for choice in choices):
            return None if isinstance(value, str) else ["Not a valid string."]
        if choices and all(isinstance(choice, int) for choice in choices):
            return None if whole else ["A valid integer is required."]
        return None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        items = {
            str(index): error
            for index, item in enumerate(value)
            if (error := _type_error(field.child, item)) is not None
        }
        return items or None
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        entries = {
            str(key): error
            for key, item in value.items()
            if (error := _type_error(field.child, item)) is not None
        }
        return entries or None
    return None


def error_response(status: int, message: str, details: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return Response(body, status=status)


def request_body_object(request: Request) -> dict[str, Any] | Response:
    """The JSON object a write sent, or the 400 to answer when the body is not an object."""
    if not isinstance(request.data, dict):
        return error_response(400, "The request body must be a JSON object.")
    return request.data


def _flatten(detail: Any) -> Any:
    """DRF's ErrorDetail tree as plain strings and lists."""
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _validation_details(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            field: [str(m) for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"nonField": [str(m) for m in exc.messages]}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn every API exception into the gateway's error body."""
    if isinstance(exc, DjangoValidationError):
        details = _validation_details(exc)
        return error_response(400, _summary(details), details)
    if isinstance(exc, Http404):
        message = str(exc) if str(exc) and not str(exc).startswith("No ") else "Not found."
        return error_response(404, message)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: ApiErrorMiddleware answers 500 in the same shape
    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        if not isinstance(details, dict):
            details = {"nonField": details if isinstance(details, list) else [details]}
        response.data = {"error": _summary(details), "details": details}
    elif isinstance(exc, exceptions.ParseError):
        response.data = {"error": f"The request body is not valid JSON: {_parse_reason(exc)}"}
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        response.data = {"error": _unsupported(exc)}
    elif isinstance(exc, exceptions.Throttled):
        seconds = getattr(exc, "wait", None)
        wait = f" Try again in {int(seconds)} seconds." if seconds is not None else ""
        response.data = {"error": f"Too many requests.{wait}"}
    elif isinstance(exc, exceptions.MethodNotAllowed):
        response.data = {"error": f"Method {context['request'].method} is not allowed here."}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = {"error": str(_flatten(detail))}
    return response


def _summary(details: dict[str, Any]) -> str:
    fields = ", ".join(details)
    first = next(iter(details.values()), [""])
    first_message = first[0] if isinstance(first, list) and first else str(first)
    if list(details) == ["nonField"]:
        return str(first_message)
    return f"Invalid input ({fields}): {first_message}"


def _parse_reason(exc: exceptions.ParseError) -> str:
    text = str(exc.detail)
    return text.removeprefix("JSON parse error - ")


def _unsupported(exc: exceptions.UnsupportedMediaType) -> str:
    media = str(exc.detail).removeprefix('Unsupported media type "').split('"')[0]
    return f"Send the body as application/json (got {media!r})."


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown URLs under /api/ answer in the API's error shape."""
    return JsonResponse({"error": f"No API route matches {request.path}."}, status=404)


# --- Django's error handlers (urls.py's handler400/403/404/500) ------------------------

# Paths whose callers are programs. The consent page (/o/authorize/, /authorize) is a
# page for people, and keeps HTML errors.
_MACHINE_PREFIXES = ("/api/", "/mcp", "/o/", "/.well-known/", "/token", "/register")
_PEOPLE_PREFIXES = ("/o/authorize", "/authorize")


def is_machine_path(path: str) -> bool:
    """Whether errors on this path answer ``{"error": ...}`` JSON rather than a page."""
    return path.startswith(_MACHINE_PREFIXES) and not path.startswith(_PEOPLE_PREFIXES)


def oauth_error_code(path: str) -> str | None:
    """The RFC 6749 / RFC 7591 error code for a malformed request to an OAuth endpoint."""
    if path.startswith(("/o/register", "/register")):
        return "invalid_client_metadata"
    if path.startswith(("/o/", "/token")) and not path.startswith(_PEOPLE_PREFIXES):
        return "invalid_request"
    return None


def _bad_request_message(exception: Exception | None) -> str:
    if isinstance(exception, MultiPartParserError):
        return f"The multipart body is malformed: {exception}."
    if isinstance(exception, RequestDataTooBig):
        return "The request body is too large."
    if isinstance(exception, TooManyFieldsSent):
        return "The request has too many fields."
    if isinstance(exception, DisallowedHost):
        return "This host is not served here."
    return "Bad request."


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_machine_path(request.path):
        return JsonResponse({"error": _bad_request_message(exception)}, status=400)
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_machine_path(request.path):
        return JsonResponse({"error": "You are not allowed to do this."}, status=403)
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_machine_path(request.path):
        return JsonResponse({"error": f"Nothing is served at {request.path}."}, status=404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if is_machine_path(request.path):
        return JsonResponse(
            {"error": "Something went wrong on the gateway; the error has been logged."},
            status=500,
        )
    return defaults.server_error(request)
