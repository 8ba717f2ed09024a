"""Streamed exports of the activity log (JSON Lines and CSV), shared by the UI and the API."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import DatabaseError
from django.http import StreamingHttpResponse
from django.utils import timezone

from audit.selectors import EXPORT_FIELDS

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


INCOMPLETE = "The export stopped early: the database did not answer in time. Narrow the filters."


def _guarded(rows: Iterable[dict[str, Any]], failed: list[bool]) -> Iterator[dict[str, Any]]:
    # Once the response has started its status cannot change any more: a query that
    # fails half-way (the statement timeout) ends the file with a line that says so,
    # rather than leaving the download hanging unfinished.
    try:
        yield from rows
    except DatabaseError:
        logger.warning("Activity export stopped early", exc_info=True)
        failed.append(True)


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    failed: list[bool] = []
    for row in _guarded(rows, failed):
        plain = {key: _plain(value) for key, value in row.items()}
        yield (json.dumps(plain, ensure_ascii=False) + "\n").encode()
    if failed:
        yield (json.dumps({"error": INCOMPLETE}) + "\n").encode()


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    failed: list[bool] = []
    for row in _guarded(rows, failed):
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
    if failed:
        writer.writerow([f"# {INCOMPLETE}"])
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
