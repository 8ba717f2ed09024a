"""Forms of the endpoint pages; the rules themselves live in ``endpoints.services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from connections.models import Connection
from endpoints import services
from endpoints.models import Endpoint, EndpointAccess
from endpoints.selectors import CatalogRow
from oauth.models import AccessDuration, Membership

# Service errors are keyed by API field names; the form's fields use these.
API_FIELD_TO_FORM = {
    "name": "name",
    "slug": "slug",
    "description": "description",
    "connectionIds": "connections",
    "access": "access",
    "memberIds": "members",
    "prefixToolNames": "prefix_names",
    "maxAccessDuration": "max_access_seconds",
    "piiFilter": "pii_filter",
}


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=services.NAME_MAX)
    slug = forms.CharField(
        label="URL slug",
        required=False,
        max_length=services.SLUG_MAX,
        help_text="The end of the endpoint's URL. Leave blank to derive it from the name.",
    )
    description = forms.CharField(
        required=False,
        max_length=services.DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    connections = forms.MultipleChoiceField(
        label="Connected servers",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Their tools start disabled: enable them on the endpoint's page.",
    )
    prefix_names = forms.BooleanField(
        label="Prefix tool and prompt names with the server's slug (server__tool)",
        required=False,
        initial=True,
        help_text=(
            "Unticked, names are served as the server wrote them, except where two "
            "servers have the same name: those keep their prefix."
        ),
    )
    max_access_seconds = forms.TypedChoiceField(
        label="Longest access a user may grant an AI client",
        choices=AccessDuration.choices,
        coerce=int,
        required=False,
        initial=AccessDuration.QUARTER,
        help_text="Users choose how long on the consent page, up to this.",
    )
    pii_filter = forms.BooleanField(
        label="Redact personal data in results (PII filter)",
        required=False,
        help_text=(
            "E-mail addresses, phone numbers, social security numbers, card numbers and IP "
            "addresses are replaced before results reach the client and the activity log."
        ),
    )
    access = forms.ChoiceField(
        label="Who may use it",
        choices=EndpointAccess.choices,
        initial=EndpointAccess.ORGANIZATION,
        widget=forms.RadioSelect,
    )
    members = forms.MultipleChoiceField(
        label="Chosen members",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Used when access is “Chosen members”. Admins may always use every endpoint.",
    )

    def __init__(
        self,
        *args: Any,
        connections: list[Connection],
        memberships: list[Membership],
        endpoint: Endpoint | None = None,
        **kwargs: Any,
    ) -> None:
        self.endpoint = endpoint
        if endpoint is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": endpoint.name,
                "slug": endpoint.slug,
                "description": endpoint.description,
                "connections": [str(link.connection_id) for link in endpoint.links.all()],
                "prefix_names": endpoint.prefix_names,
                "max_access_seconds": endpoint.max_access_seconds,
                "pii_filter": endpoint.pii_filter,
                "access": endpoint.access,
                "members": [str(m.user_id) for m in endpoint.members.all()],
            }
        super().__init__(*args, **kwargs)
        connection_field = self.fields["connections"]
        assert isinstance(connection_field, forms.MultipleChoiceField)
        connection_field.choices = [(str(c.pk), f"{c.name} ({c.slug})") for c in connections]
        member_field = self.fields["members"]
        assert isinstance(member_field, forms.MultipleChoiceField)
        member_field.choices = [
            (str(m.user_id), f"{m.user.get_username()} · {m.get_role_display()}")
            for m in memberships
        ]
        if endpoint is not None:
            self.fields[
                "slug"
            ].help_text = (
                "Changing it changes the URL: clients configured with the old one stop working."
            )

    def service_arguments(self) -> dict[str, Any]:
        """The form's data as keyword arguments of endpoint_create / endpoint_update."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "slug": data.get("slug") or (None if self.endpoint is None else self.endpoint.slug),
            "description": data.get("description") or "",
            "connection_ids": data.get("connections") or [],
            "prefix_names": bool(data.get("prefix_names")),
            "max_access_seconds": data.get("max_access_seconds") or AccessDuration.QUARTER,
            "pii_filter": bool(data.get("pii_filter")),
            "access": data["access"],
            "member_ids": [int(user_id) for user_id in data.get("members") or []],
        }

    def add_service_errors(self, error: ValidationError) -> None:
        """Show the service's per-field messages beside the form's fields."""
        for field, messages in error.message_dict.items():
            self.add_error(API_FIELD_TO_FORM.get(field), messages)


class EntryForm(forms.Form):
    """Alias and description override of one tool, prompt or resource."""

    alias = forms.CharField(
        required=False,
        max_length=128,
        help_text="The name clients see instead of the default. Letters, digits, _ . - only.",
    )
    description = forms.CharField(
        label="Description shown to clients",
        required=False,
        max_length=services.OVERRIDE_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Leave blank to use the server's description.",
    )

    def __init__(self, *args: Any, row: CatalogRow, **kwargs: Any) -> None:
        if "initial" not in kwargs:
            kwargs["initial"] = {"alias": row.alias, "description": row.description_override or ""}
        super().__init__(*args, **kwargs)
        self.row = row
        self.fields["description"].widget.attrs["placeholder"] = row.upstream_description
        if row.group == "resources":
            del self.fields["alias"]

    def service_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"description": self.cleaned_data.get("description") or None}
        if "alias" in self.fields:
            arguments["alias"] = self.cleaned_data.get("alias") or ""
        return arguments

    def add_service_errors(self, error: ValidationError) -> None:
        for field, messages in error.message_dict.items():
            self.add_error(field if field in self.fields else None, messages)
