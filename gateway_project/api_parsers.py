"""The REST API's request parser: the gateway's strict JSON (``strictjson``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from gateway_project import strictjson


class StrictJSONParser(JSONParser):
    """``application/json`` bodies, refusing invalid Unicode and excessive nesting with a
    400 that says why (DRF's own parser accepts lone surrogates and, nested a few
    thousand deep, raises ``RecursionError``: a 500)."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return strictjson.loads(stream.read(), exact_integers=True)
        except strictjson.JsonRefused as refused:
            raise ParseError(f"JSON parse error - {refused}") from None
