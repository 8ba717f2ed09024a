"""Forms of the OAuth pages."""

from __future__ import annotations

from django import forms
from oauth2_provider.forms import AllowForm

from oauth.models import AccessDuration


class ConsentForm(AllowForm):
    """DOT's consent form plus the access duration the user chooses."""

    duration = forms.TypedChoiceField(
        choices=AccessDuration.choices, coerce=int, initial=AccessDuration.WEEK
    )
