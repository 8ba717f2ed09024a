"""Corrections drf-spectacular cannot infer, so the OpenAPI schema matches the answers.

- Answers every operation can give: 401 without a valid token, 403 when the role
  does not allow it, 429 when throttled; and for a body, 400 when it is not JSON,
  413 over the size cap (``GATEWAY_MAX_BODY_BYTES``), 415 when it is not JSON at all.
- drf-spectacular makes every field of a PATCH body optional (DRF's partial update),
  but the catalog PATCH bodies need their list and the audit policy its number; and
  a catalog change must name at least one thing to change.

Schemathesis (``.ci/fuzz``) holds the schema to what the API answers.
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


EVERY_OPERATION: Final = {
    "401": "No valid API token or session.",
    "403": "Your role does not allow this.",
    "429": "Too many requests.",
}
WITH_A_BODY: Final = {
    "400": "The body is not valid JSON, or the input is invalid.",
    "413": "The body is larger than the gateway accepts.",
    "415": "The body is not JSON.",
}
_ERROR: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def schema_postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """A ``POSTPROCESSING_HOOKS`` entry of ``SPECTACULAR_SETTINGS``."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            answers = operation.setdefault("responses", {})
            extra = {**EVERY_OPERATION, **(WITH_A_BODY if "requestBody" in operation else {})}
            for status, description in extra.items():
                answers.setdefault(status, {"description": description, "content": _ERROR})
    schemas = result.get("components", {}).get("schemas", {})
    for name, required in REQUIRED_IN_PATCH.items():
        if name in schemas:
            schemas[name]["required"] = required
    for name, keys in CHANGES.items():
        if name in schemas:
            schemas[name]["anyOf"] = [{"required": [key]} for key in keys]
    return result
