"""Template filters that render form widgets with Bootstrap's classes.

Django renders a widget's ``class`` from the form; the admin UI's look belongs to the
templates, so the classes are added here, at render time, next to those the form
itself sets (``mono`` on the command field, say).
"""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.forms.boundfield import BoundField, BoundWidget
from django.utils.safestring import SafeString

register = template.Library()


def _bootstrap_class(widget: forms.Widget) -> str:
    if isinstance(widget, forms.CheckboxInput | forms.RadioSelect | forms.CheckboxSelectMultiple):
        return "form-check-input"
    if isinstance(widget, forms.Select):
        return "form-select"
    return "form-control"


def _joined(*classes: str) -> str:
    return " ".join(c for c in classes if c)


@register.filter
def bootstrap_widget(field: BoundField) -> SafeString:
    """The field's widget with ``form-control`` (or its kind), ``is-invalid`` on errors,
    and ``aria-describedby`` pointing at its help and error texts."""
    widget = field.field.widget
    attrs: dict[str, Any] = {
        "class": _joined(
            str(widget.attrs.get("class", "")),
            _bootstrap_class(widget),
            "is-invalid" if field.errors else "",
        )
    }
    described = []
    if field.help_text:
        described.append(f"{field.id_for_label}-help")
    if field.errors:
        described.append(f"{field.id_for_label}-error")
    if described:
        attrs["aria-describedby"] = " ".join(described)
    if field.errors:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs=attrs)


@register.filter
def bootstrap_choice(choice: BoundWidget) -> SafeString:
    """One radio or checkbox of a multiple-choice field, as a ``form-check-input``."""
    data = dict(choice.data)
    attrs = dict(data.get("attrs") or {})
    attrs["class"] = _joined(str(attrs.get("class", "")), "form-check-input")
    data["attrs"] = attrs
    return BoundWidget(choice.parent_widget, data, choice.renderer).tag(wrap_label=False)
