"""The gateway as an OAuth authorization server for AI clients.

Thin adapters over django-oauth-toolkit: the consent page (DOT's authorization
view with the endpoint, its tools and an access duration), the discovery
documents (RFC 8414 at every location clients look, RFC 9728 per endpoint) and
dynamic client registration with a per-address rate limit. The storage rules
live in ``oauth.validators``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import (
    AuthorizationView,
    DynamicClientRegistrationView,
)
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

from connections.selectors import credentials_missing
from endpoints.models import Endpoint
from endpoints.selectors import endpoint_for_resource, endpoint_member_may_use, endpoint_served
from gateway_project import strictjson
from gateway_project.client_address import client_address
from oauth.forms import ConsentForm
from oauth.models import (
    AccessDuration,
    Membership,
    OAuthApplication,
    redirect_uri_is_loopback,
)

SCOPE = "mcp"
ALLOWED_GRANT_TYPES = {"authorization_code", "refresh_token"}


def issuer() -> str:
    """The one issuer of every metadata document and every ``iss`` parameter."""
    return str(oauth2_settings.OIDC_ISS_ENDPOINT)


class ConsentView(AuthorizationView):
    """``/o/authorize/``: sign in, then allow a client to use one endpoint for a while.

    Before DOT shows its form, the request must name exactly one endpoint as
    ``resource``, use PKCE with S256, and come from a user allowed on that
    endpoint. Errors about the client or its redirect URI are shown on the page;
    the others go back to the client's redirect URI, as OAuth requires.
    """

    template_name = "oauth/consent.html"
    form_class = ConsentForm

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            _scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = OAuthApplication.objects.get(client_id=credentials["client_id"])
        if request.GET.get("code_challenge_method") != "S256":
            return self._redirect_error(
                application,
                credentials,
                "invalid_request",
                "PKCE is required with code_challenge_method=S256.",
            )
        endpoint = self._endpoint_named(request.GET.getlist("resource"))
        if endpoint is None:
            return self._redirect_error(
                application,
                credentials,
                "invalid_target",
                "The resource parameter must be the URL of one MCP endpoint of this gateway.",
            )
        refusal = self._refusal(request, endpoint, application, credentials)
        if refusal is not None:
            return refusal
        self.gateway_endpoint = endpoint
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        endpoint = self._endpoint_named(request.POST.get("resource", "").split())
        if endpoint is None:
            return _page_error(
                request,
                "This consent form does not name an MCP endpoint. Start again from your AI client.",
            )
        refusal = self._refusal(request, endpoint, None, {})
        if refusal is not None:
            return refusal
        self.gateway_endpoint = endpoint
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        seconds = form.cleaned_data["duration"]
        if seconds > self.gateway_endpoint.max_access_seconds:
            return _page_error(
                self.request,
                "That access duration is longer than this endpoint allows. Start again.",
            )
        self.gateway_access_seconds = seconds
        return super().form_valid(form)

    def form_invalid(self, form: ConsentForm) -> HttpResponse:
        return _page_error(
            self.request, "The consent form was incomplete. Start again from your AI client."
        )

    def create_authorization_response(
        self, request: HttpRequest, scopes: Any, credentials: dict[str, Any], allow: bool
    ) -> Any:
        # oauthlib copies credentials onto its request, where the validator reads them.
        credentials["gateway_endpoint_id"] = self.gateway_endpoint.pk
        credentials["gateway_access_seconds"] = getattr(self, "gateway_access_seconds", None)
        return super().create_authorization_response(request, scopes, credentials, allow)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        endpoint = self.gateway_endpoint
        durations = [
            (value, label)
            for value, label in AccessDuration.choices
            if value <= endpoint.max_access_seconds
        ]
        default = AccessDuration.WEEK if endpoint.max_access_seconds >= AccessDuration.WEEK else 0
        redirect_uri = str(context.get("redirect_uri") or "")
        served = endpoint_served(endpoint=endpoint)
        served_connections = {
            item.connection_id
            for group in (served.tools, served.prompts, served.resources, served.resource_templates)
            for item in group
        }
        context.update(
            endpoint=endpoint,
            tools=served.tools,
            # Servers that work with each user's own account and still lack this user's:
            # offered here (never blocking the consent), with a way back to this page.
            missing_credentials=credentials_missing(
                connection_ids=served_connections, user=self.request.user
            ),
            consent_url=self.request.get_full_path(),
            durations=durations,
            default_duration=default or durations[-1][0],
            redirect_origin=_origin(redirect_uri),
            redirect_is_loopback=redirect_uri_is_loopback(redirect_uri),
        )
        return context

    def _endpoint_named(self, resources: list[str]) -> Endpoint | None:
        if len(resources) != 1:
            return None
        return endpoint_for_resource(resource=resources[0])

    def _refusal(
        self,
        request: HttpRequest,
        endpoint: Endpoint,
        application: OAuthApplication | None,
        credentials: dict[str, Any],
    ) -> HttpResponse | None:
        if not request.user.is_authenticated:
            return None  # DOT sends the visitor to sign in first
        membership = Membership.objects.filter(
            organization_id=endpoint.organization_id, user=request.user
        ).first()
        if endpoint_member_may_use(endpoint=endpoint, membership=membership):
            return None
        back = None
        if application is not None and credentials.get("redirect_uri"):
            back = _with_query(
                credentials["redirect_uri"],
                {
                    "error": "access_denied",
                    "error_description": "The user may not use this endpoint.",
                    "state": credentials.get("state") or "",
                    "iss": issuer(),
                },
            )
        return render(
            request,
            "oauth/consent_refused.html",
            {"endpoint": endpoint, "application": application, "back": back},
            status=403,
        )

    def _redirect_error(
        self,
        application: OAuthApplication,
        credentials: dict[str, Any],
        error: str,
        description: str,
    ) -> HttpResponse:
        failure = OAuthToolkitError(
            error=CustomOAuth2Error(
                error=error, description=description, state=credentials.get("state")
            ),
            redirect_uri=credentials["redirect_uri"],
        )
        return self.error_response(failure, application)


def _origin(uri: str) -> str:
    """Where a redirect URI returns to, scheme included: ``https://app.example``,
    ``http://127.0.0.1:3030``, ``cursor://anysphere.cursor-retrieval``, ``com.example.app:``."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def _with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode({k: v for k, v in params.items() if v})


def _page_error(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "oauth/consent_error.html", {"message": message}, status=400)


class ProtectedResourceMetadataView(View):
    """RFC 9728 metadata of one endpoint: its exact URL, the issuer, the ``mcp`` scope."""

    def get(self, request: HttpRequest, slug: str | None = None) -> HttpResponse:
        endpoint, resource = _endpoint_of_request(request, slug)
        if endpoint is None:
            response = JsonResponse(
                {"error": "not_found", "error_description": "No MCP endpoint at this address."},
                status=404,
            )
        else:
            response = JsonResponse(
                {
                    "resource": resource,
                    "authorization_servers": [issuer()],
                    "scopes_supported": [SCOPE],
                    "bearer_methods_supported": ["header"],
                    "resource_name": endpoint.name,
                }
            )
        response["Access-Control-Allow-Origin"] = "*"
        return response


def _endpoint_of_request(request: HttpRequest, slug: str | None) -> tuple[Endpoint | None, str]:
    """The endpoint a metadata request is about, and its URL as that request's client sees it."""
    if slug is not None:
        endpoint = Endpoint.objects.filter(slug=slug).first()
        return endpoint, endpoint.url if endpoint else ""
    domain = settings.GATEWAY_ENDPOINT_DOMAIN
    host = request.get_host().split(":")[0].lower()
    if domain and host.endswith(f".{domain}"):
        endpoint = Endpoint.objects.filter(slug=host[: -len(domain) - 1]).first()
        if endpoint is not None and endpoint.domain_url:
            return endpoint, endpoint.domain_url
    return None, ""


@method_decorator(csrf_exempt, name="dispatch")
class RegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, open to MCP clients but rate-limited per client address
    (``client_address``: the TCP peer, or the client a trusted proxy forwarded).

    Only the authorization code grant (with refresh) can be registered: that is
    the only flow the gateway's authorizations support.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limit = settings.GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR
        key = f"oauth-register:{client_address(request)}"
        cache.add(key, 0, timeout=3600)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=3600)
            count = 1
        if count > limit:
            response = JsonResponse(
                {
                    "error": "too_many_requests",
                    "error_description": (
                        f"At most {limit} client registrations per hour from one address."
                    ),
                },
                status=429,
            )
            response["Retry-After"] = "3600"
            return response
        grant_types = _grant_types(request.body)
        if grant_types is not None and not set(grant_types) <= ALLOWED_GRANT_TYPES:
            return JsonResponse(
                {
                    "error": "invalid_client_metadata",
                    "error_description": (
                        "Only the authorization_code and refresh_token grant types are supported."
                    ),
                },
                status=400,
            )
        return _redirect_uri_error(super().post(request, *args, **kwargs))


def _redirect_uri_error(response: HttpResponse) -> HttpResponse:
    """RFC 7591 §3.2.2 names refused redirect URIs ``invalid_redirect_uri``; DOT
    reports every failed model check as ``invalid_client_metadata``, describing it
    as "<field>: <messages>", so a refusal of the redirect URIs is renamed here."""
    if response.status_code != 400:
        return response
    try:
        body = json.loads(response.content)
    except ValueError:
        return response
    description = str(body.get("error_description", ""))
    if body.get("error") == "invalid_client_metadata" and description.startswith("redirect_uris: "):
        return JsonResponse(
            {
                "error": "invalid_redirect_uri",
                "error_description": description.removeprefix("redirect_uris: "),
            },
            status=400,
        )
    return response


def _grant_types(body: bytes) -> list[Any] | None:
    try:
        data = strictjson.loads(body)  # StrictJsonBodyMiddleware refused what this refuses
    except ValueError:
        return None  # DOT answers malformed JSON itself
    grant_types = data.get("grant_types") if isinstance(data, dict) else None
    return grant_types if isinstance(grant_types, list) else None
