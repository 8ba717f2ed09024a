"""The connection form of the admin UI; the rules themselves live in the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from connections.models import AuthType, Connection, CredentialMode, Transport
from connections.services import STDIO_DISABLED

# Service errors are keyed by API field names; the form's fields use these.
API_FIELD_TO_FORM = {
    "name": "name",
    "serverUrl": "server_url",
    "transport": "transport",
    "authType": "auth_type",
    "token": "token",
    "headers": "headers",
    "instructions": "instructions",
    "command": "command",
    "args": "args",
    "env": "env",
    "credentialMode": "credential_mode",
    "oauthClientId": "oauth_client_id",
    "oauthClientSecret": "oauth_client_secret",
    "oauthScopes": "oauth_scopes",
}


class TransportSelect(forms.Select):
    """A select whose options listed in ``disabled_values`` cannot be chosen."""

    def __init__(self, *args: Any, disabled_values: frozenset[str] = frozenset(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.disabled_values = disabled_values

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(*args, **kwargs)
        if str(option["value"]) in self.disabled_values:
            option["attrs"]["disabled"] = True
        return option


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


class ConnectionForm(forms.Form):
    name = forms.CharField(max_length=100)
    server_url = forms.CharField(
        label="Server URL",
        max_length=2000,
        required=False,
        widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp"}),
    )
    transport = forms.ChoiceField(choices=Transport.choices, initial=Transport.STREAMABLE_HTTP)
    auth_type = forms.ChoiceField(
        label="Authentication", choices=AuthType.choices, initial=AuthType.NONE
    )
    credential_mode = forms.ChoiceField(
        label="Credentials",
        choices=CredentialMode.choices,
        initial=CredentialMode.SHARED,
        required=False,
        help_text="Personal: every user connects their own token or sign-in on “My connections”; "
        "calls are made with the credential of the user the AI client acts for.",
    )
    oauth_client_id = forms.CharField(
        label="OAuth client id",
        required=False,
        max_length=500,
        help_text="Only if the server's authorization server gave you one (register the "
        "gateway's redirect URI there, shown below). Left empty, the gateway registers itself "
        "(client ID metadata document or dynamic registration).",
    )
    oauth_client_secret = forms.CharField(
        label="OAuth client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    oauth_scopes = forms.CharField(
        label="OAuth scopes",
        required=False,
        max_length=1000,
        help_text="Space-separated; empty asks for what the server advertises.",
    )
    token = forms.CharField(
        label="Bearer token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    clear_token = forms.BooleanField(label="Remove the stored token", required=False)
    headers = forms.CharField(
        label="Extra headers",
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "placeholder": "X-Api-Version: 2\nX-Tenant: acme",
                "autocomplete": "off",
            }
        ),
        help_text="One 'Name: value' per line. Stored encrypted; never shown again.",
    )
    clear_headers = forms.BooleanField(label="Remove the stored headers", required=False)
    command = forms.CharField(
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "npx", "class": "mono"}),
        help_text="The executable: a name found on the gateway host's PATH, or an absolute path.",
    )
    args = forms.CharField(
        label="Arguments",
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "-y\n@modelcontextprotocol/server-everything"}
        ),
        help_text="One argument per line, passed as is (no shell).",
    )
    env = forms.CharField(
        label="Environment variables",
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "API_KEY=…\nREGION=eu", "autocomplete": "off"}
        ),
        help_text="One NAME=value per line: the server's secrets. Stored encrypted; "
        "values never shown again.",
    )
    clear_env = forms.BooleanField(label="Remove the stored variables", required=False)
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Guidance for AI agents on how to use this server.",
    )

    def __init__(self, *args: Any, connection: Connection | None = None, **kwargs: Any) -> None:
        self.connection = connection
        if connection is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": connection.name,
                "server_url": connection.server_url,
                "transport": connection.transport,
                "auth_type": connection.auth_type,
                "credential_mode": connection.credential_mode,
                "oauth_client_id": connection.oauth_client_id
                if connection.oauth_registration == "manual"
                else "",
                "oauth_scopes": connection.oauth_scopes,
                "instructions": connection.instructions or "",
                "command": connection.command,
                "args": "\n".join(connection.args),
            }
        super().__init__(*args, **kwargs)
        self.stdio_allowed: bool = settings.GATEWAY_ALLOW_STDIO
        self.stdio_disabled_reason = "" if self.stdio_allowed else STDIO_DISABLED
        editing_stdio = connection is not None and connection.is_stdio
        if not self.stdio_allowed:
            # Offered greyed out with the reason beside it; a stdio connection saved
            # earlier keeps its transport (it can still be renamed or switched to HTTP),
            # but what it runs cannot change.
            self.fields["transport"].widget = TransportSelect(
                choices=Transport.choices,
                disabled_values=frozenset() if editing_stdio else frozenset({Transport.STDIO}),
            )
            self.fields["transport"].help_text = self.stdio_disabled_reason
            for name in ("command", "args", "env", "clear_env"):
                del self.fields[name]
        if connection is not None and connection.oauth_registration == "manual":
            self.fields["oauth_client_secret"].help_text = (
                "A secret is stored; leave blank to keep it."
                if connection.oauth_client_secret_is_set
                else "No secret is stored (a public client)."
            )
        elif connection is not None and connection.oauth_registration:
            self.fields["oauth_client_id"].help_text = (
                f"The gateway registered itself ({connection.oauth_registration}). "
                "Enter an id only to use one the server's authorization server gave you."
            )
        if connection is not None:
            self.fields["token"].help_text = (
                "A token is stored; leave blank to keep it."
                if connection.token_is_set
                else "No token is stored."
            )
            if connection.headers_are_set:
                self.fields["headers"].help_text = (
                    "Headers are stored; leave blank to keep them. "
                    "Anything entered here replaces them."
                )
            if "env" in self.fields and connection.env_is_set:
                names = ", ".join(connection.env_names) or "unreadable with the configured keys"
                self.fields["env"].help_text = (
                    f"Stored: {names}. Leave blank to keep them; anything entered here "
                    "replaces them all."
                )
        else:
            for name in ("clear_token", "clear_headers", "clear_env"):
                self.fields.pop(name, None)

    @property
    def has_stdio_fields(self) -> bool:
        return "command" in self.fields

    def clean_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("headers") or ""
        if not text.strip():
            return None
        headers: dict[str, str] = {}
        for number, line in _lines(text):
            name, sep, value = line.partition(":")
            if not sep:
                raise ValidationError(f"Line {number}: write 'Name: value'.")
            name = name.strip()
            if name.lower() in (seen.lower() for seen in headers):
                raise ValidationError(f"Line {number}: the {name} header is given twice.")
            headers[name] = value.strip()
        return headers

    def clean_args(self) -> list[str]:
        text = self.cleaned_data.get("args") or ""
        return [line.strip() for _, line in _lines(text)]

    def clean_env(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("env") or ""
        if not text.strip():
            return None
        env: dict[str, str] = {}
        for number, line in _lines(text):
            name, sep, value = line.partition("=")
            if not sep:
                raise ValidationError(f"Line {number}: write 'NAME=value'.")
            name = name.strip()
            if name in env:
                raise ValidationError(f"Line {number}: {name} is given twice.")
            env[name] = value.strip()
        return env

    def service_arguments(self) -> dict[str, Any]:
        """The form's data as keyword arguments of connection_create / connection_update.

        Only the fields of the chosen transport are sent (the others may hold what
        the connection had before a switch), plus any secret typed for the other
        kind, so the service explains it instead of it being lost. On edit, a blank
        token, headers or environment box keeps the stored secret.
        """
        data = self.cleaned_data
        stdio = data["transport"] == Transport.STDIO
        arguments: dict[str, Any] = {
            "name": data["name"],
            "transport": data["transport"],
            "instructions": data.get("instructions") or None,
        }
        if stdio:
            if self.has_stdio_fields:
                arguments["command"] = data.get("command") or ""
                arguments["args"] = data.get("args") or []
        else:
            arguments["server_url"] = data.get("server_url") or ""
            arguments["auth_type"] = data["auth_type"]
            arguments["credential_mode"] = data.get("credential_mode") or (
                self.connection.credential_mode
                if self.connection is not None
                else CredentialMode.SHARED
            )
            if data["auth_type"] == AuthType.OAUTH:
                arguments["oauth_scopes"] = data.get("oauth_scopes") or ""
                client_id = data.get("oauth_client_id") or ""
                manual = self.connection is not None and (
                    self.connection.oauth_registration == "manual"
                )
                # An empty id box on a connection that registered itself keeps that registration.
                if client_id or manual or self.connection is None:
                    arguments["oauth_client_id"] = client_id or None
                if data.get("oauth_client_secret"):
                    arguments["oauth_client_secret"] = data["oauth_client_secret"]
        creating = self.connection is None
        for secret in ("token", "headers", "env"):
            if secret not in self.fields:
                continue
            applies = (secret == "env") == stdio
            value = data.get(secret) or None
            cleared = bool(data.get(f"clear_{secret}"))
            if value is not None:
                arguments[secret] = value
            elif applies and (creating or cleared):
                arguments[secret] = None
        return arguments

    def add_service_errors(self, error: ValidationError) -> None:
        """Show the service's per-field messages beside the form's fields."""
        for field, messages in error.message_dict.items():
            form_field = API_FIELD_TO_FORM.get(field)
            self.add_error(form_field if form_field in self.fields else None, messages)
