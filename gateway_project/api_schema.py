"""Corrections drf-spectacular cannot infer, so the OpenAPI schema matches the answers.

drf-spectacular makes every field of a PATCH body optional (DRF's partial update),
but the catalog PATCH bodies need their list and the audit policy its number; and a
catalog change must name at least one thing to change. Schemathesis's
positive-data checks (``.ci/fuzz``) hold the schema to what the API accepts.
"""

from __future__ import annotations

from typing import Any, Final

REQUIRED_IN_PATCH: Final = {
    "PatchedEndpointToolsChangeRequest": ["tools"],
    "PatchedEndpointPromptsChangeRequest": ["prompts"],
    "PatchedEndpointResourcesChangeRequest": ["resources"],
    "PatchedAuditPolicyInRequest": ["retentionDays"],
}
# A catalog change names its entry and at least one of these.
CHANGES: Final = {
    "_ToolChangeRequest": ["enabled", "alias", "description"],
    "_ResourceChangeRequest": ["enabled", "description"],
}


def schema_postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """A ``POSTPROCESSING_HOOKS`` entry of ``SPECTACULAR_SETTINGS``."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, required in REQUIRED_IN_PATCH.items():
        if name in schemas:
            schemas[name]["required"] = required
    for name, keys in CHANGES.items():
        if name in schemas:
            schemas[name]["anyOf"] = [{"required": [key]} for key in keys]
    return result
