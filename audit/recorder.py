"""Recording MCP calls without slowing them: a write-ahead spool and a background writer.

On the hot path (the transport's event loop) a call costs: building one dict,
redacting and serialising its arguments and result, one ``os.write`` of a JSON
line to this process's spool segment and a list append. No database.

The spool makes a crash harmless: the line is in the kernel's page cache before
the client gets its answer, so a killed process (even ``SIGKILL``) leaves its
records in ``GATEWAY_AUDIT_SPOOL_DIR``. (Surviving a power cut as well would
need an ``fsync`` per call; that is a deliberate non-goal.)

Storing the records happens in one of two places, decided at every flush:

- **The audit writer process** (``manage.py audit_writer``, started by ``make
  run``; run one per host in production). While it holds the ``writer.lock`` of
  the spool folder, a gateway process only *closes* its segment every
  ``GATEWAY_AUDIT_FLUSH_INTERVAL_MS`` (or when ``GATEWAY_AUDIT_BATCH_SIZE``
  records wait) and the writer process stores closed segments. The database
  insert, its CPU and its hold on the GIL stay out of the process that serves
  MCP calls: that is what keeps recording under 15 % of throughput.
- **The gateway process itself**, when no writer process runs (a lone daphne, the
  tests): a daemon thread flushes the in-memory batch with one bulk insert that
  ignores ids already stored, then deletes the segment.

Segments that could not be inserted, and those of dead processes, are replayed:
by the writer process continuously, at start-up, every ``REPLAY_SECONDS`` by each
gateway process, and by the ``audit_spool_replay`` Celery task. A live gateway
process holds an exclusive ``flock`` on its open segment, so a replayer only ever
takes segments nobody writes to; replaying twice is harmless because the record
id is the primary key. A segment the database refuses twice for a reason of its
own is stored record by record and the rest set aside (``audit.quarantine``), so
it never holds up the segments after it.

Every text of a record is made storable first (``gateway_project.text``: NUL and
lone surrogates, which PostgreSQL refuses, become U+FFFD and ``text_replaced``
says so), and refusals are recorded within a budget per source
(``audit.refusals``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from audit import refusals
from audit.pii import pii_redact
from audit.quarantine import (
    QUARANTINE_AFTER_FAILURES,
    QuarantineNote,
    database_unavailable,
    failure_reason,
    quarantine_note_store,
    quarantine_write,
)
from audit.redaction import redactor
from gateway_project import strictjson
from gateway_project.text import (
    REPLACEMENT,
    fields_storable,
    json_storable,
)

logger = logging.getLogger(__name__)

RECORDED_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})
REPLAY_SECONDS = 30.0
STATS_SECONDS = 60.0
SECRETS_REFRESH_SECONDS = 30.0
# Held (exclusively) by the running audit writer process, in the spool folder.
WRITER_LOCK = "writer.lock"
_NOT_ENABLED_MESSAGES = ("Unknown tool", "Unknown prompt", "Resource not found")

Record = dict[str, Any]
Inserter = Callable[[list[Record]], None]


# --- ids and small helpers ----------------------------------------------------------


def record_id_new(now: float | None = None) -> str:
    """A UUID version 7 (milliseconds, then random bits): ids sort by time."""
    ms = int((time.time() if now is None else now) * 1000)
    # random is re-seeded in a forked child, and 74 random bits per millisecond
    # make a collision between processes negligible.
    rand = random.getrandbits(80)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 64) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# The standard library's encoder, for what orjson refuses (integers beyond 64 bits).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _dumps_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON: orjson (about ten times faster here), else the standard library."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return _ENCODER.encode(value).encode()


def _dumps(value: Any) -> str:
    return _dumps_bytes(value).decode()


def _payload_dumps(value: Any) -> tuple[str, bool]:
    """JSON text of a caller's or an upstream's value that the database can hold, and
    whether characters were replaced to make it so (``gateway_project.text``).

    Costs nothing more in the common case: only a lone surrogate makes the encoders
    fail, and then every NUL and lone surrogate of the value is replaced. A NUL alone
    needs nothing: inside JSON text it is the six characters of its escape.
    """
    try:
        return _dumps_bytes(value).decode(), False
    except UnicodeEncodeError:
        pass
    storable = json_storable(value)[0]
    # ``default=str`` may still meet an object whose text holds a surrogate.
    return _ENCODER.encode(storable).encode(errors="replace").decode(), True


def _encoded_size(value: Any) -> int:
    """The size of ``value`` as JSON, even when it holds lone surrogates."""
    try:
        return len(_dumps_bytes(value))
    except UnicodeEncodeError:
        return len(_ENCODER.encode(value).encode(errors="surrogatepass"))


_INT32 = (1 << 31) - 1


def _int32(value: Any, *, minimum: int = -_INT32 - 1) -> int | None:
    """An integer the column holds, or None: a header or an upstream may send anything,
    and one value out of range would fail the whole batch it is stored with."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if minimum <= value <= _INT32 else None


def record_storable(record: Record) -> bool:
    """Make every text of a record storable, in place; note it on the record."""
    if fields_storable(record):
        record["text_replaced"] = True
        return True
    return False


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _clip(text: str, limit: int) -> tuple[str, bool, bool]:
    """Redact, then cut at ``limit`` characters: (text, truncated, redacted).

    Cutting first (with room for the longest secret) bounds the regex work on
    huge payloads; cutting again after redaction keeps the limit exact and never
    leaves half a secret at the edge.
    """
    if len(text) > limit:
        text = text[: limit + redactor.longest + 64]
    text, redacted = redactor.redact(text)
    if len(text) > limit:
        return text[:limit], True, redacted
    return text, False, redacted


def session_digest(session_id: str | None) -> str:
    """A short digest of the (signed) session id: enough to group a session's calls."""
    if not session_id:
        return ""
    return _digest(session_id)


@lru_cache(maxsize=4096)
def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


# --- the spool and the background writer ---------------------------------------------------


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    columns: tuple[tuple[str, Any], ...]  # (record key, default) in column order
    adapted: tuple[tuple[int, Callable[[Any], Any]], ...]  # (index, to-database adapter)
    # PostgreSQL: a staging table per session, COPY into it, then move the rows.
    staging_sql: str = ""
    copy_sql: str = ""
    move_sql: str = ""


_INSERT: dict[str, _InsertPlan] = {}


def _insert_plan(connection: Any) -> _InsertPlan:
    """The INSERT statement, its columns' defaults and the few values to adapt.

    Built once per database vendor. The ORM's ``bulk_create`` costs about 0.4 ms of
    Python per record (model instances, field preparation); this costs a few µs, and
    the writer thread holds the GIL only for that part.
    """
    from django.db import models

    from audit.models import AuditRecord

    plan = _INSERT.get(connection.vendor)
    if plan is not None:
        return plan
    quote = connection.ops.quote_name
    columns: list[tuple[str, Any]] = []
    adapted: list[tuple[int, Callable[[Any], Any]]] = []
    names: list[str] = []
    for index, field in enumerate(AuditRecord._meta.concrete_fields):
        names.append(quote(field.column))
        default = field.get_default() if field.has_default() else (None if field.null else "")
        columns.append((field.attname, default))
        if isinstance(field, models.UUIDField) and connection.vendor != "postgresql":
            adapted.append((index, _uuid_hex))
        elif isinstance(field, models.DateTimeField):
            adapted.append((index, partial(_moment, connection)))
    table = quote(AuditRecord._meta.db_table)
    marks = ", ".join(["%s"] * len(columns))
    # Only the model's own (quoted) table and column names go into the statement.
    listed = ", ".join(names)
    sql = f"INSERT INTO {table} ({listed}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608
    staging = copy = move = ""
    if connection.vendor == "postgresql":
        # Emptied at each commit, so a connection reused by another transaction
        # (a pooler) never sees rows it did not copy.
        staging = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS audit_staging "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        copy = f"COPY audit_staging ({listed}) FROM STDIN"
        move = (
            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM audit_staging "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
    plan = _INSERT[connection.vendor] = _InsertPlan(
        sql, tuple(columns), tuple(adapted), staging, copy, move
    )
    return plan


def _uuid_hex(value: Any) -> Any:
    return None if value is None else str(value).replace("-", "")


def _moment(connection: Any, value: Any) -> Any:
    moment = datetime.fromtimestamp(float(value), UTC)
    return connection.ops.adapt_datetimefield_value(moment)


def records_insert(records: list[Record]) -> None:
    """Bulk-insert records, skipping ids already stored (replays are idempotent).

    On PostgreSQL the rows are copied (``COPY``) into a temporary table and moved
    with one ``INSERT … SELECT … ON CONFLICT DO NOTHING``: about 3.5 times faster
    than ``executemany`` (45 against 150 µs per record, 14 against 37 µs of the
    writer's CPU), since COPY cannot skip conflicts itself.
    """
    from django.db import connection, transaction

    plan = _insert_plan(connection)
    rows = []
    for record in records:
        _nul_replace(record)
        row = [record.get(key, default) for key, default in plan.columns]
        for index, adapt in plan.adapted:
            row[index] = adapt(row[index])
        rows.append(row)
    with transaction.atomic(), connection.cursor() as cursor:
        if plan.copy_sql:
            raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no copy()
            raw.execute(plan.staging_sql)
            with raw.copy(plan.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            raw.execute(plan.move_sql)
        else:
            cursor.executemany(plan.sql, rows)


def _nul_replace(record: Record) -> None:
    # PostgreSQL refuses a NUL in text; written escaped in the spool, it is replaced
    # here, in the writer, where a scan of each text costs the request path nothing.
    # (Lone surrogates never get this far: the spool's JSON encoder refuses them, and
    # ``SpoolWriter.append`` makes such a record storable.)
    found = [key for key, value in record.items() if isinstance(value, str) and "\x00" in value]
    for key in found:
        record[key] = record[key].replace("\x00", REPLACEMENT)
    if found:
        record["text_replaced"] = True


class SpoolWriter:
    """This process's spool segment, in-memory batch and flusher thread."""

    def __init__(
        self,
        directory: Path,
        *,
        batch_size: int = 500,
        flush_seconds: float = 1.0,
        insert: Inserter = records_insert,
        on_replay: Callable[[], None] | None = None,
        relay: bool = False,
        on_tick: Callable[[], int] | None = None,
        on_quarantine: Callable[[QuarantineNote], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        # Leave storing to the audit writer process whenever one runs.
        self.relay = relay
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.insert = insert
        self.on_replay = on_replay
        self.on_tick = on_tick
        self.on_quarantine = quarantine_note_store if on_quarantine is None else on_quarantine
        # Segment name -> how many times storing it failed for a reason of its own.
        self._failures: dict[str, int] = {}
        self.quarantined_segments = 0
        self.quarantined_records = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[Record] = []
        self._fd: int | None = None
        self._path: Path | None = None
        self._sequence = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._tag = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._last_warning = 0.0
        # What recording costs this process (logged every STATS_SECONDS and at exit):
        # calls recorded and seconds spent recording them on the request path; records
        # stored and CPU seconds the writer thread spent storing them.
        self.recorded = 0
        self.record_seconds = 0.0
        self.stored = 0
        self.store_cpu_seconds = 0.0
        self.relayed = 0
        # The writer process replays all the time: its passes are not news.
        self.replay_log_level = logging.INFO

    # hot path ----------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Write the record to the spool (crash-safe) and queue it for the next batch.

        Never raises: if the spool cannot be written (disk full, permissions) the
        record still goes to the database with the next batch, only without the
        crash protection, and the failure is logged.
        """
        try:
            line = _dumps_bytes(record) + b"\n"
        except UnicodeEncodeError:
            # A lone surrogate in a text field: nothing could write it. (A NUL is
            # written escaped; ``records_insert`` replaces it before the database.)
            record_storable(record)
            line = _ENCODER.encode(record).encode(errors="replace") + b"\n"
        with self._lock:
            try:
                if self._fd is None:
                    self._open_segment()
                assert self._fd is not None
                os.write(self._fd, line)
            except OSError:
                self._spool_failed()
            self._buffer.append(record)
            waiting = len(self._buffer)
        if waiting >= self.batch_size:
            self._wake.set()

    def _spool_failed(self) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            logger.warning(
                "Activity log: cannot write the spool in %s", self.directory, exc_info=True
            )

    def _open_segment(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sequence += 1
        name = f"spool-{self._tag}-{self._sequence:06d}.jsonl"
        # Created under a name replayers ignore, locked, then renamed: a replayer never
        # sees a segment that is not yet locked (it would take it and delete it).
        creating = self.directory / f".{name}.new"
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Held while this process lives: replayers skip segments someone writes to.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / name
            os.rename(creating, path)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._path = fd, path

    @property
    def pending(self) -> int:
        return len(self._buffer)

    # background ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher thread (once); it first replays leftover segments."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        next_replay = 0.0
        next_stats = time.monotonic() + STATS_SECONDS
        while not self._stopping:
            now = time.monotonic()
            if now >= next_replay:
                next_replay = now + REPLAY_SECONDS
                self._safely(self.replay)
            if now >= next_stats:
                next_stats = now + STATS_SECONDS
                self.stats_log()
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self.on_tick is not None:
                self._safely(self.on_tick)
            self._safely(self.flush)

    def stats_log(self) -> None:
        if not self.recorded and not self.stored:
            return
        logger.info(
            "Activity log: %d calls recorded (%.1f µs each on the request path), "
            "%d stored here (%.1f µs CPU each in the writer thread), "
            "%d left to the writer process",
            self.recorded,
            self.record_seconds / max(self.recorded, 1) * 1e6,
            self.stored,
            self.store_cpu_seconds / max(self.stored, 1) * 1e6,
            self.relayed,
        )

    def _safely(self, work: Callable[[], int]) -> None:
        try:
            work()
        except Exception:
            logger.warning(
                "Activity log: writing to the database failed; kept in the spool", exc_info=True
            )
            _db_connection_reset()

    def flush(self) -> int:
        """Insert the waiting batch; its segment is deleted once the rows are stored."""
        with self._flush_lock:
            with self._lock:
                if not self._buffer:
                    return 0
                records, self._buffer = self._buffer, []
                fd, path = self._fd, self._path
                self._fd = self._path = None
            if fd is not None:
                os.close(fd)
            if self.relay and path is not None and writer_process_running(self.directory):
                # Closed (unlocked): the writer process takes the segment from here.
                self.relayed += len(records)
                return len(records)
            # On failure the closed segment stays and the next replay stores it.
            started = time.thread_time()
            self.insert(records)
            self.store_cpu_seconds += time.thread_time() - started
            self.stored += len(records)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return len(records)

    def replay(self) -> int:
        """Store the records of every segment no live process writes to; return how many."""
        if not self.directory.is_dir():
            return 0
        if self.on_replay is not None:
            self.on_replay()
        for creating in self.directory.glob(".spool-*.new"):
            # A process died between creating a segment and naming it: always empty.
            with contextlib.suppress(OSError):
                if time.time() - creating.stat().st_mtime > 60:
                    creating.unlink()
        stored = 0
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                records = list(_parse_segment(path, fd))
                try:
                    for start in range(0, len(records), 1000):
                        self.insert([_redact_again(r) for r in records[start : start + 1000]])
                except Exception as error:
                    if database_unavailable(error):
                        raise  # every segment would fail alike: stop this pass
                    # Something in this segment: the others must not wait behind it.
                    stored += self._segment_failed(path, records, error)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                self._failures.pop(path.name, None)
                stored += len(records)
            finally:
                os.close(fd)
        if stored:
            logger.log(
                self.replay_log_level, "Activity log: replayed %d records from the spool", stored
            )
        return stored

    def _segment_failed(self, path: Path, records: list[Record], error: Exception) -> int:
        """Count a failure of the segment; at the second, store what can be stored of
        it one record at a time and quarantine the rest. Return how many were stored.

        Called while the segment's lock is held.
        """
        _db_connection_reset()
        failures = self._failures[path.name] = self._failures.get(path.name, 0) + 1
        reason = failure_reason(error)
        if failures < QUARANTINE_AFTER_FAILURES:
            logger.warning(
                "Activity log: storing %s failed (%s); it is retried once more, then quarantined",
                path.name,
                reason,
            )
            return 0
        stored, refused = 0, []
        for record in records:
            try:
                self.insert([record])
            except Exception as single:
                if database_unavailable(single):
                    raise  # try the whole segment again later
                _db_connection_reset()
                refused.append(record)
                reason = failure_reason(single)
            else:
                stored += 1
        if refused:
            note = quarantine_write(self.directory, path.name, refused, reason)
            self.on_quarantine(note)
            self.quarantined_segments += 1
            self.quarantined_records += len(refused)
            logger.error(
                "Activity log: %d of the %d records of %s cannot be stored (%s); they are "
                "in %s, the other %d are stored",
                len(refused),
                len(records),
                path.name,
                reason,
                note.path,
                stored,
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._failures.pop(path.name, None)
        return stored

    def close(self) -> None:
        """Stop the thread and flush what waits (on shutdown)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._safely(self.flush)
        self.stats_log()


def _parse_segment(path: Path, fd: int) -> Iterable[Record]:
    # Read through the descriptor that holds the lock: the writer may unlink the name
    # (after storing the same records itself) while a replayer reads it.
    with os.fdopen(os.dup(fd), "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:
                    # The standard library reads what orjson refuses (a lone surrogate
                    # escaped by an older writer, integers beyond 64 bits).
                    record = json.loads(raw)
                except ValueError:
                    # Only a write cut short by a full disk can leave half a line.
                    logger.warning(
                        "Activity log: skipped a damaged line %d of %s", number, path.name
                    )
                    continue
                if isinstance(record, dict):
                    record_storable(record)
            if isinstance(record, dict) and "id" in record:
                yield record


def _redact_again(record: Record) -> Record:
    # A dead process may not have known every secret: redact with today's set too.
    for key in ("arguments", "result", "error_message"):
        value = record.get(key)
        if isinstance(value, str) and value:
            text, changed = redactor.redact(value)
            if changed:
                record[key] = text
                record["secrets_redacted"] = True
    return record


def _db_connection_reset() -> None:
    from django.db import connection

    with contextlib.suppress(Exception):
        connection.close()


def secrets_refresh() -> None:
    """Load every connection's credential values into the redactor (background only)."""
    from audit.services import connection_secret_values

    redactor.replace(connection_secret_values())


_writer: SpoolWriter | None = None
_writer_lock = threading.Lock()


def writer() -> SpoolWriter:
    """This process's writer (made from settings, started on first use)."""
    global _writer
    found = _writer
    if found is None:
        with _writer_lock:
            if _writer is None:
                _writer = SpoolWriter(
                    Path(settings.GATEWAY_AUDIT_SPOOL_DIR),
                    batch_size=settings.GATEWAY_AUDIT_BATCH_SIZE,
                    flush_seconds=settings.GATEWAY_AUDIT_FLUSH_INTERVAL_MS / 1000,
                    on_replay=secrets_refresh_quietly,
                    relay=True,
                    on_tick=refusal_summaries_append,
                )
                _writer.start()
            found = _writer
    return found


def writer_set(new: SpoolWriter | None) -> None:
    """Use another writer (tests drive one by hand, without its thread)."""
    global _writer
    _writer = new


def secrets_refresh_quietly() -> None:
    try:
        secrets_refresh()
    except Exception:
        logger.warning("Activity log: could not load connection secrets", exc_info=True)
        _db_connection_reset()


def recorder_start() -> None:
    """Start this server process's writer now, so leftovers are replayed at start-up."""
    if settings.GATEWAY_AUDIT_ENABLED:
        writer()


# --- the audit writer process ----------------------------------------------------------------


def writer_process_running(directory: Path) -> bool:
    """Whether an audit writer process holds the spool folder's lock (a few syscalls)."""
    try:
        fd = os.open(directory / WRITER_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases a lock taken just now
    return False


class WriterProcess:
    """The audit writer process's loop: store every closed segment of the spool folder.

    Holds the folder's ``writer.lock`` while it runs; a second one started on the
    same folder waits for the lock, so it takes over when the first stops.
    """

    def __init__(
        self,
        directory: Path,
        *,
        interval: float = 1.0,
        insert: Inserter = records_insert,
        refresh_secrets: Callable[[], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self.store = SpoolWriter(self.directory, insert=insert)
        self.store.replay_log_level = logging.DEBUG
        self.refresh_secrets = refresh_secrets
        self._stop = threading.Event()
        self._lock_fd: int | None = None
        self._last_warning = 0.0
        self.stored = 0

    def acquire(self, *, wait: bool = True) -> bool:
        """Take the folder's writer lock (waiting for it unless ``wait`` is false)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or self._stop.wait(self.interval):
                    os.close(fd)
                    return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop(self) -> None:
        self._stop.set()

    def once(self) -> int:
        """Store what is waiting now; never raises (the segments stay for the next pass)."""
        try:
            stored = self.store.replay()
        except Exception:
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                logger.warning(
                    "Activity log: storing the spool failed; it is kept and retried",
                    exc_info=True,
                )
            _db_connection_reset()
            return 0
        self.stored += stored
        return stored

    def run(self) -> None:
        """Until ``stop()``: store closed segments every ``interval`` seconds."""
        if not self.acquire():
            return
        next_secrets = 0.0
        try:
            while True:
                now = time.monotonic()
                if self.refresh_secrets is not None and now >= next_secrets:
                    next_secrets = now + SECRETS_REFRESH_SECONDS
                    self.refresh_secrets()
                self.once()
                if self._stop.wait(self.interval):
                    break
            # Gateway processes stopping with us close their last segments: take them too.
            self.once()
        finally:
            self.release()


# --- building records ---------------------------------------------------------------------


def _principal_fields(principal: Any) -> dict[str, Any]:
    if principal is None:
        return {}
    return {
        "user_id": getattr(principal, "user_id", None),
        "username": str(getattr(principal, "username", ""))[:150],
        "token_kind": str(getattr(principal, "token_kind", ""))[:16],
        "token_id": str(getattr(principal, "token_id", ""))[:64],
        "client_name": str(getattr(principal, "client_name", ""))[:200],
    }


def _call_name(method: str, params: Mapping[str, Any]) -> tuple[str, Any]:
    if method == "resources/read":
        uri = params.get("uri")
        return (str(uri) if uri is not None else ""), {"uri": uri}
    name = params.get("name")
    return (str(name) if name is not None else ""), params.get("arguments")


def _first_text(result: Mapping[str, Any]) -> str:
    for item in result.get("content") or ():
        if isinstance(item, dict) and item.get("type") == "text":
            return str(item.get("text", ""))
    return ""


def call_record(
    *,
    ctx: Any,
    message: Mapping[str, Any],
    response: Mapping[str, Any],
    http_status: int,
    started_at: float,
    total_seconds: float,
    request_bytes: int,
    pii_found: Iterable[str] = (),
) -> Record:
    """The record of one answered call (engine context, request, response)."""
    limit = settings.GATEWAY_AUDIT_MAX_PAYLOAD
    method = str(message.get("method"))
    raw_params = message.get("params")
    params: Mapping[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    name, arguments = _call_name(method, params)
    route = getattr(ctx, "route", None)
    view = ctx.view
    record: Record = {
        "id": record_id_new(started_at),
        "at": started_at,
        "organization_id": str(getattr(ctx.principal, "organization_id", "")),
        "endpoint_id": view.endpoint_id,
        "endpoint_name": view.name[:200],
        "method": method,
        "name": name[:512],
        "protocol_version": str(ctx.protocol_version)[:16],
        "session_id": session_digest(ctx.session_id),
        "http_status": http_status,
        "total_ms": round(total_seconds * 1000, 3),
        # From the Content-Length header: whatever its sender wrote.
        "request_bytes": request_bytes if 0 <= request_bytes <= _INT32 else 0,
        **_principal_fields(ctx.principal),
    }
    info = ctx.client_info
    if isinstance(info, Mapping) and info.get("name"):
        record["client_software"] = f"{info.get('name')} {info.get('version') or ''}".strip()[:200]
    if route is not None:
        record["connection_id"] = route.connection_id
        record["connection_name"] = route.server_label[:200]
        record["upstream_name"] = str(route.upstream_name)[:512]
    upstream = getattr(ctx, "upstream_seconds", None)
    if upstream is not None:
        record["upstream_ms"] = round(upstream * 1000, 3)
    redacted = replaced = False
    if arguments is not None:
        dumped, replaced = _payload_dumps(arguments)
        text, truncated, redacted = _clip(dumped, limit)
        record["arguments"], record["arguments_truncated"] = text, truncated
    if getattr(ctx, "upstream_error", None) is not None:  # rare: one getattr otherwise
        detail = _error_detail(ctx)
        if detail:
            record["error_detail"], changed = redactor.redact(detail[:4000])
            redacted = redacted or changed
    if "error" in response:
        error = response["error"] if isinstance(response["error"], dict) else {}
        message_text, changed = redactor.redact(str(error.get("message", ""))[:2000])
        redacted = redacted or changed
        record["error_message"] = message_text
        record["rpc_code"] = _int32(error.get("code"))
        record["response_bytes"] = _encoded_size(response)
        if route is None:
            record["status"] = "refused"
            record["refusal"] = (
                "not_enabled"
                if record["error_message"].startswith(_NOT_ENABLED_MESSAGES)
                else "invalid_request"
            )
        else:
            record["status"] = "error"
    else:
        result = response.get("result")
        result = result if isinstance(result, dict) else {}
        full, result_replaced = _payload_dumps(result)
        replaced = replaced or result_replaced
        record["response_bytes"] = _size(full) + 40
        text, truncated, changed = _clip(full, limit)
        redacted = redacted or changed
        record["result"], record["result_truncated"] = text, truncated
        is_error = result.get("isError") is True
        record["is_error"] = is_error if method == "tools/call" else None
        if is_error:
            record["status"] = "tool_error"
            error_text, _ = redactor.redact(_first_text(result)[:2000])
            record["error_message"] = error_text
        else:
            record["status"] = "success"
    found = sorted(pii_found)
    if found:
        record["pii_redacted"] = ",".join(found)
    if redacted:
        record["secrets_redacted"] = True
    if replaced:
        record["text_replaced"] = True
    return record


def _error_detail(ctx: Any) -> str:
    """The precise description of the upstream failure behind this call, for admins.

    The backend leaves the ``UpstreamError`` it turned into the client's message on
    ``ctx.upstream_error``; its ``detail`` (when it has one) is what is kept.
    """
    error = getattr(ctx, "upstream_error", None)
    detail = getattr(error, "detail", None) if error is not None else None
    return detail if isinstance(detail, str) else ""


async def engine_handle(
    engine: Any, ctx: Any, message: dict[str, Any], request: Any
) -> tuple[dict[str, Any], int]:
    """``engine.handle`` plus the activity record (and the PII filter) for recorded methods.

    The transport calls this instead of ``engine.handle``; ``request`` gives the
    headers (for the request size) and the scope (for when the request arrived).
    """
    if message.get("method") not in RECORDED_METHODS:
        return await engine.handle(ctx, message)
    pii = getattr(ctx.view, "pii_filter", False)
    if not settings.GATEWAY_AUDIT_ENABLED and not pii:
        return await engine.handle(ctx, message)
    started_at = time.time()
    started = request.scope.get("gateway.started") or time.perf_counter()
    response, status = await engine.handle(ctx, message)
    found: set[str] = set()
    if pii and isinstance(response.get("result"), dict):
        response["result"] = pii_redact(response["result"], found)
    if settings.GATEWAY_AUDIT_ENABLED:
        _record_call(ctx, message, response, status, started_at, started, request, found)
    return response, status


def _record_call(
    ctx: Any,
    message: dict[str, Any],
    response: dict[str, Any],
    status: int,
    started_at: float,
    started: float,
    request: Any,
    found: set[str],
) -> None:
    # A failure to record must never fail the call it records.
    begun = time.perf_counter()
    try:
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        record = call_record(
            ctx=ctx,
            message=message,
            response=response,
            http_status=status,
            started_at=started_at,
            total_seconds=time.perf_counter() - started,
            request_bytes=length,
            pii_found=found,
        )
        spool = writer()
        spool.append(record)
        spool.recorded += 1
        spool.record_seconds += time.perf_counter() - begun
    except Exception:
        logger.exception("Activity log: could not record a call")


# --- refused requests (unauthorized, revoked, forbidden, rate-limited, bad session) -----------

# Before dispatch: the token, the endpoint or the rate limit refused the request.
_REFUSALS = {401: "unauthorized", 403: "forbidden", 404: "forbidden", 429: "rate_limited"}
# After dispatch (the body was read): the session or the headers refused it.
_SESSION_REFUSALS = {404: "session_unknown"}


async def refusal_record(
    *,
    request: Any,
    receive: Callable[[], Awaitable[dict[str, Any]]],
    status: int,
    body: Any,
    principal: Any,
    slug: str,
    hub: Callable[[], Awaitable[Any]],
    message: Any = None,
) -> None:
    """Record a refused POST when it asked for a recorded method.

    Refused before dispatch, the request body is not read yet: it is read here to
    learn the method. Refused after dispatch (an unknown or ended session, headers
    that contradict the body), ``message`` is the body the transport parsed. The
    organisation is the endpoint's; a token that names a user of another
    organisation is recorded without that user.
    """
    if (
        not settings.GATEWAY_AUDIT_ENABLED
        or (message is None and status not in _REFUSALS)
        or request.method != "POST"
        or not slug
    ):
        return
    try:
        await _refusal_record(request, receive, status, body, principal, slug, hub, message)
    except Exception:
        logger.warning("Activity log: could not record a refused request", exc_info=True)


async def _refusal_record(
    request: Any,
    receive: Callable[[], Awaitable[dict[str, Any]]],
    status: int,
    body: Any,
    principal: Any,
    slug: str,
    hub: Callable[[], Awaitable[Any]],
    message: Any,
) -> None:
    from channels.db import database_sync_to_async

    from audit.selectors import token_identity

    started_at = time.time()
    if message is None:
        message, size = await _body_read(receive)
        reason = _REFUSALS[status]
    else:
        try:
            size = int(request.headers.get("content-length") or 0)
        except ValueError:
            size = 0
        reason = _SESSION_REFUSALS.get(status, "invalid_request")
    if not isinstance(message, dict) or message.get("method") not in RECORDED_METHODS:
        return
    loaded = await (await hub()).view(slug)
    if loaded is None:
        return
    method = str(message["method"])
    # Before anything costs more (the token lookup below is a database query).
    if not refusals.limiter.admit(
        organization_id=str(loaded.organization_id),
        source=refusals.refusal_source(request.scope.get("client")),
        endpoint_id=loaded.id,
        endpoint_name=loaded.view.name,
        method=method,
        request_bytes=size,
        now=started_at,
    ):
        return
    who = principal
    if who is None:
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() == "bearer" and raw.strip():
            who = await database_sync_to_async(token_identity)(raw=raw.strip())
            if who is not None and who.revoked:
                reason = "revoked"
    if who is not None and str(who.organization_id) != str(loaded.organization_id):
        who = None
        reason = "other_organization" if status in (403, 404) else reason
    raw_params = message.get("params")
    params: Mapping[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    name, arguments = _call_name(method, params)
    error = body.get("error") if isinstance(body, dict) else None
    error_text = error.get("message") if isinstance(error, dict) else error
    record: Record = {
        "id": record_id_new(started_at),
        "at": started_at,
        "organization_id": str(loaded.organization_id),
        "endpoint_id": loaded.id,
        "endpoint_name": loaded.view.name[:200],
        "method": method,
        "name": name[: refusals.MAX_NAME],
        "status": "refused",
        "refusal": reason,
        "http_status": _int32(status, minimum=0),
        "error_message": redactor.redact(str(error_text or ""))[0][:2000],
        "session_id": session_digest(request.headers.get("mcp-session-id")),
        "protocol_version": str(request.headers.get("mcp-protocol-version", ""))[:16],
        "request_bytes": _int32(size, minimum=0) or 0,
        "response_bytes": _encoded_size(body),
        "total_ms": 0.0,
        **_principal_fields(who),
    }
    if arguments is not None:
        # Whoever was refused chose these: keep a glimpse, not a payload.
        dumped, replaced = _payload_dumps(arguments)
        text, truncated, redacted = _clip(dumped, refusals.MAX_ARGUMENTS)
        record["arguments"], record["arguments_truncated"] = text, truncated
        if redacted:
            record["secrets_redacted"] = True
        if replaced:
            record["text_replaced"] = True
    writer().append(record)


def refusal_summaries_append() -> int:
    """Spool the summarising record of every refusal window that has ended (the
    background writer thread calls this at each tick); return how many."""
    summaries = refusals.limiter.summaries(new_id=record_id_new)
    if summaries:
        spool = writer()
        for summary in summaries:
            spool.append(summary)
    return len(summaries)


async def _body_read(receive: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[Any, int]:
    """The request's JSON body (None when it is not JSON) and its size."""
    chunks: list[bytes] = []
    size = 0
    while True:
        part = await receive()
        if part["type"] == "http.disconnect":
            break
        chunks.append(part.get("body", b""))
        size += len(chunks[-1])
        if size > settings.GATEWAY_MCP_MAX_BODY_BYTES or not part.get("more_body", False):
            break
    try:
        # The parser every inbound path uses: invalid Unicode and deep nesting are
        # refused here too, rather than made into a record that cannot be stored.
        return strictjson.loads(b"".join(chunks)), size
    except ValueError:
        return None, size
