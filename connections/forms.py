"""The connection form of the admin UI; the rules themselves live in the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from connections.models import AuthType, Connection, Transport

# Service errors are keyed by API field names; the form's fields use these.
API_FIELD_TO_FORM = {
    "name": "name",
    "serverUrl": "server_url",
    "transport": "transport",
    "authType": "auth_type",
    "token": "token",
    "headers": "headers",
    "instructions": "instructions",
}


class ConnectionForm(forms.Form):
    name = forms.CharField(max_length=100)
    server_url = forms.CharField(
        label="Server URL",
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp"}),
    )
    transport = forms.ChoiceField(choices=Transport.choices, initial=Transport.STREAMABLE_HTTP)
    auth_type = forms.ChoiceField(
        label="Authentication", choices=AuthType.choices, initial=AuthType.NONE
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
                "instructions": connection.instructions or "",
            }
        super().__init__(*args, **kwargs)
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
        else:
            del self.fields["clear_token"]
            del self.fields["clear_headers"]

    def clean_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("headers") or ""
        if not text.strip():
            return None
        headers: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValidationError(f"Line {number}: write 'Name: value'.")
            name = name.strip()
            if name.lower() in (seen.lower() for seen in headers):
                raise ValidationError(f"Line {number}: the {name} header is given twice.")
            headers[name] = value.strip()
        return headers

    def service_arguments(self) -> dict[str, Any]:
        """The form's data as keyword arguments of connection_create / connection_update.

        On edit, a blank token or headers box keeps the stored secret.
        """
        data = self.cleaned_data
        arguments: dict[str, Any] = {
            "name": data["name"],
            "server_url": data["server_url"],
            "transport": data["transport"],
            "auth_type": data["auth_type"],
            "instructions": data.get("instructions") or None,
        }
        if self.connection is None:
            arguments["token"] = data.get("token") or None
            arguments["headers"] = data.get("headers") or None
            return arguments
        if data.get("clear_token"):
            arguments["token"] = None
        elif data.get("token"):
            arguments["token"] = data["token"]
        if data.get("clear_headers"):
            arguments["headers"] = None
        elif data.get("headers"):
            arguments["headers"] = data["headers"]
        return arguments

    def add_service_errors(self, error: ValidationError) -> None:
        """Show the service's per-field messages beside the form's fields."""
        for field, messages in error.message_dict.items():
            self.add_error(API_FIELD_TO_FORM.get(field), messages)
