"""Streamed exports of the activity log (JSON Lines and CSV), shared by the UI and the API."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from django.utils import timezone

from audit.selectors import EXPORT_FIELDS


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        plain = {key: _plain(value) for key, value in row.items()}
        yield (json.dumps(plain, ensure_ascii=False) + "\n").encode()


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        # A leading =, +, - or @ would be a formula in a spreadsheet: prefix a quote.
        writer.writerow(
            [
                ("'" + text) if isinstance(text, str) and text[:1] in ("=", "+", "-", "@") else text
                for text in (_plain(row[field]) for field in EXPORT_FIELDS)
            ]
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def export_response(rows: Iterable[dict[str, Any]], fmt: str) -> StreamingHttpResponse:
    """A streamed download of ``rows`` as ``jsonl`` or ``csv``."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        fmt = "jsonl"
        response = StreamingHttpResponse(jsonl_lines(rows), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="activity-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response
