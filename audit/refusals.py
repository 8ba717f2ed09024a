"""How many refused requests the activity log records one by one, per source.

A refused request costs its sender nothing (a forged token is free), so without a
bound a flood of them becomes a flood of rows, each carrying what the sender
chose to put in it. The first ``PER_WINDOW`` refusals of a source (the client's
address; an IPv6 address counts by its /64 network, which one host usually
holds whole) at an organisation are recorded as usual within a window of
``WINDOW_SECONDS``; the rest are only counted, and when the window ends one row
says how many there were ("and 2,743 more refusals from 203.0.113.7 in the last
minute").

Kept in process memory: each server process bounds its own share, which is what
keeps the log's growth proportional to the number of processes rather than to
the sender's rate. The table of sources is bounded too (``MAX_SOURCES``); past it,
new sources share one count per organisation.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PER_WINDOW = 20
WINDOW_SECONDS = 60.0
MAX_SOURCES = 10_000
# What a refused request's sender chose (arguments, the tool name) is kept this short.
MAX_ARGUMENTS = 256
MAX_NAME = 200
OTHER_SOURCES = "other sources"
SUMMARY_REFUSAL = "more_refused"  # the ``refusal`` of a summarising row


def refusal_source(client: Any) -> str:
    """The source a refusal is counted under: the peer's address from the ASGI scope's
    ``client`` (IPv6 by its /64 network), or ``unknown``."""
    host = client[0] if isinstance(client, list | tuple) and client else None
    if not isinstance(host, str) or not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Window:
    started: float
    admitted: int = 0
    suppressed: int = 0
    suppressed_bytes: int = 0
    last_at: float = 0.0
    # Where the last suppressed refusal was aimed, for the summarising row.
    endpoint_id: Any = None
    endpoint_name: str = ""
    method: str = ""


def _span(seconds: float) -> str:
    if seconds == 60:
        return "the last minute"
    if seconds % 60 == 0:
        return f"the last {int(seconds // 60)} minutes"
    return f"the last {seconds:g} seconds"


class RefusalLimiter:
    """Admits ``per_window`` refusals per (organisation, source) per window; counts the
    rest and turns each window's count into one summarising record. Thread-safe (the
    event loop admits, the background writer thread collects the summaries)."""

    def __init__(
        self,
        *,
        per_window: int = PER_WINDOW,
        window_seconds: float = WINDOW_SECONDS,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.max_sources = max_sources
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()
        self._ended: list[tuple[tuple[str, str], _Window]] = []

    def admit(
        self,
        *,
        organization_id: str,
        source: str,
        endpoint_id: Any = None,
        endpoint_name: str = "",
        method: str = "",
        request_bytes: int = 0,
        now: float | None = None,
    ) -> bool:
        """Whether this refusal is recorded as its own row; if not, it is counted."""
        now = time.time() if now is None else now
        key = (organization_id, source)
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.window_seconds:
                self._end(key, window)
                window = None
            if window is None:
                if len(self._windows) >= self.max_sources:
                    self._end_expired(now)
                if len(self._windows) >= self.max_sources:
                    key = (organization_id, OTHER_SOURCES)
                    window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(started=now)
            if window.admitted < self.per_window:
                window.admitted += 1
                return True
            window.suppressed += 1
            window.suppressed_bytes += max(request_bytes, 0)
            window.last_at = now
            window.endpoint_id, window.endpoint_name = endpoint_id, endpoint_name
            window.method = method
            return False

    def _end(self, key: tuple[str, str], window: _Window) -> None:
        del self._windows[key]
        if window.suppressed:
            self._ended.append((key, window))

    def _end_expired(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.started >= self.window_seconds:
                self._end(key, window)

    def summaries(
        self, *, now: float | None = None, new_id: Callable[[float], str]
    ) -> list[dict[str, Any]]:
        """The summarising records of every window that has ended (each once)."""
        now = time.time() if now is None else now
        with self._lock:
            self._end_expired(now)
            ended, self._ended = self._ended, []
        return [self._summary(key, window, new_id) for key, window in ended]

    def _summary(
        self, key: tuple[str, str], window: _Window, new_id: Callable[[float], str]
    ) -> dict[str, Any]:
        organization_id, source = key
        return {
            "id": new_id(window.last_at),
            "at": window.last_at,
            "organization_id": organization_id,
            "endpoint_id": window.endpoint_id,
            "endpoint_name": window.endpoint_name[:200],
            "method": window.method[:32],
            "status": "refused",
            "refusal": SUMMARY_REFUSAL,
            "error_message": (
                f"and {window.suppressed:,} more refusals from {source} "
                f"in {_span(self.window_seconds)}"
            ),
            "request_bytes": min(window.suppressed_bytes, (1 << 31) - 1),
            "total_ms": 0.0,
        }

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._ended.clear()


limiter = RefusalLimiter()
