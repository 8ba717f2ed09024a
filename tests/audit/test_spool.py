"""The write-ahead spool and the writer: batches, replays, failures, live segments."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audit.recorder import SpoolWriter, record_id_new


def _record(n: int) -> dict:
    return {"id": record_id_new(), "at": 1_700_000_000.0 + n, "n": n}


class Store:
    def __init__(self, fail: int = 0) -> None:
        self.rows: dict[str, dict] = {}
        self.fail = fail
        self.inserts = 0

    def __call__(self, records: list[dict]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database down")
        self.inserts += 1
        for record in records:
            self.rows.setdefault(record["id"], record)  # ignore_conflicts


def test_a_flush_stores_the_batch_once_and_removes_its_segment(tmp_path):
    store = Store()
    writer = SpoolWriter(tmp_path, insert=store)
    for n in range(10):
        writer.append(_record(n))
    assert len(list(tmp_path.glob("*.jsonl"))) == 1

    assert writer.flush() == 10
    assert len(store.rows) == 10 and store.inserts == 1
    assert list(tmp_path.glob("*.jsonl")) == []
    assert writer.flush() == 0


def test_a_failed_insert_keeps_the_segment_and_a_replay_stores_it_once(tmp_path):
    store = Store(fail=1)
    writer = SpoolWriter(tmp_path, insert=store)
    for n in range(5):
        writer.append(_record(n))
    with pytest.raises(RuntimeError):
        writer.flush()
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    writer.append(_record(99))  # goes to a new segment, still open

    assert writer.replay() == 5
    assert writer.replay() == 0
    assert sorted(r["n"] for r in store.rows.values()) == [0, 1, 2, 3, 4]
    assert len(list(tmp_path.glob("*.jsonl"))) == 1  # the open one is left alone


def test_a_segment_another_live_process_writes_to_is_not_replayed(tmp_path):
    held = tmp_path / "spool-1-aa-000001.jsonl"
    held.write_text(json.dumps(_record(1)) + "\n")
    fd = os.open(held, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer holds its segment
    try:
        script = textwrap.dedent(
            f"""
            import fcntl, os, sys
            fd = os.open({str(held)!r}, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                sys.exit(3)
            """
        )
        # flock is per open file: another process sees the lock.
        assert subprocess.run([sys.executable, "-c", script]).returncode == 3
    finally:
        os.close(fd)
    store = Store()
    assert SpoolWriter(tmp_path, insert=store).replay() == 1  # released: now it is taken


def test_a_damaged_last_line_is_skipped_and_the_rest_stored(tmp_path):
    segment = tmp_path / "spool-2-bb-000001.jsonl"
    segment.write_text(json.dumps(_record(1)) + "\n" + json.dumps(_record(2)) + "\n" + '{"id": "x')
    store = Store()
    assert SpoolWriter(tmp_path, insert=store).replay() == 2
    assert not segment.exists()


def test_record_ids_sort_by_time(tmp_path):
    ids = [record_id_new(1_700_000_000.0 + n) for n in range(50)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 50


def test_the_size_trigger_wakes_the_writer(tmp_path):
    writer = SpoolWriter(Path(tmp_path), batch_size=3, insert=Store())
    writer.append(_record(1))
    writer.append(_record(2))
    assert not writer._wake.is_set()
    writer.append(_record(3))
    assert writer._wake.is_set()


def test_the_database_insert_ignores_records_already_stored(db, admin):
    from audit.models import AuditRecord
    from audit.recorder import records_insert

    records = [
        {
            "id": record_id_new(),
            "at": 1_700_000_000.0 + n,
            "organization_id": str(admin.organization.pk),
            "endpoint_id": str(admin.organization.pk),
            "method": "tools/call",
            "name": f"t{n}",
            "status": "success",
            "is_error": False,
        }
        for n in range(3)
    ]
    records_insert(records)
    records_insert(records)  # a replay of the same segment

    stored = AuditRecord.objects.order_by("at")
    assert [r.name for r in stored] == ["t0", "t1", "t2"]
    assert stored[0].at.timestamp() == 1_700_000_000.0
    assert stored[0].endpoint_id == admin.organization.pk


def test_a_replayer_running_all_along_never_loses_or_breaks_a_writers_records(tmp_path):
    import threading

    stored = Store()
    writer = SpoolWriter(tmp_path, insert=stored)
    replayer = SpoolWriter(tmp_path, insert=stored)  # another process's replay loop
    stop = threading.Event()
    errors: list[BaseException] = []

    def replay_forever() -> None:
        while not stop.is_set():
            try:
                replayer.replay()
            except BaseException as error:  # pragma: no cover (the failure we look for)
                errors.append(error)

    thread = threading.Thread(target=replay_forever)
    thread.start()
    try:
        appended = []
        for n in range(3000):
            record = _record(n)
            appended.append(record["id"])
            writer.append(record)  # must never raise
            if n % 50 == 49:
                writer.flush()  # a new segment is created after each flush
        writer.flush()
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(stored.rows) == set(appended)
    assert list(tmp_path.glob("*.jsonl")) == []


# --- the audit writer process (relay mode) ---------------------------------------------------


def test_while_a_writer_process_runs_the_gateway_process_leaves_storing_to_it(tmp_path):
    from audit.recorder import WriterProcess, writer_process_running

    in_gateway, in_writer = Store(), Store()
    process = WriterProcess(tmp_path, insert=in_writer)
    assert process.acquire(wait=False)
    try:
        assert writer_process_running(tmp_path)
        gateway = SpoolWriter(tmp_path, insert=in_gateway, relay=True)
        for n in range(25):
            gateway.append(_record(n))
        assert gateway.flush() == 25
        assert in_gateway.inserts == 0 and gateway.relayed == 25
        assert len(list(tmp_path.glob("spool-*.jsonl"))) == 1  # closed, waiting for the writer

        assert process.once() == 25
        assert sorted(r["n"] for r in in_writer.rows.values()) == list(range(25))
        assert list(tmp_path.glob("spool-*.jsonl")) == []
    finally:
        process.release()
    assert not writer_process_running(tmp_path)


def test_without_a_writer_process_the_gateway_process_stores_its_records_itself(tmp_path):
    from audit.recorder import writer_process_running

    store = Store()
    gateway = SpoolWriter(tmp_path, insert=store, relay=True)
    for n in range(5):
        gateway.append(_record(n))
    assert not writer_process_running(tmp_path)
    assert gateway.flush() == 5
    assert store.inserts == 1 and gateway.relayed == 0
    assert list(tmp_path.glob("spool-*.jsonl")) == []


def test_a_second_writer_process_waits_for_the_first_to_stop(tmp_path):
    from audit.recorder import WriterProcess

    first, second = WriterProcess(tmp_path, insert=Store()), WriterProcess(tmp_path, insert=Store())
    assert first.acquire(wait=False)
    try:
        assert not second.acquire(wait=False)
    finally:
        first.release()
    assert second.acquire(wait=False)
    second.release()


def test_a_writer_process_stores_every_record_of_a_busy_gateway_process_exactly_once(tmp_path):
    import threading

    from audit.recorder import WriterProcess

    in_gateway, in_writer = Store(), Store()
    process = WriterProcess(tmp_path, interval=0.005, insert=in_writer)
    assert process.acquire(wait=False)
    process.release()  # run() takes it again
    thread = threading.Thread(target=process.run)
    thread.start()
    try:
        while process._lock_fd is None:
            time.sleep(0.001)
        gateway = SpoolWriter(tmp_path, insert=in_gateway, relay=True)
        appended = []
        for n in range(3000):
            record = _record(n)
            appended.append(record["id"])
            gateway.append(record)
            if n % 100 == 99:
                gateway.flush()
        gateway.flush()
    finally:
        process.stop()
        thread.join()
    # Everything went through the writer process, once (its last pass takes the last segment).
    assert in_gateway.inserts == 0
    assert sorted(in_writer.rows) == sorted(appended)
    assert list(tmp_path.glob("spool-*.jsonl")) == []


def test_a_writer_process_that_cannot_store_keeps_the_segments_for_later(tmp_path):
    from audit.recorder import WriterProcess

    failing = Store(fail=1)
    gateway = SpoolWriter(tmp_path, insert=Store(), relay=True)
    process = WriterProcess(tmp_path, insert=failing)
    assert process.acquire(wait=False)
    try:
        for n in range(3):
            gateway.append(_record(n))
        gateway.flush()
        assert process.once() == 0  # the database is down: logged, nothing lost
        assert len(list(tmp_path.glob("spool-*.jsonl"))) == 1
        assert process.once() == 3
    finally:
        process.release()
    assert len(failing.rows) == 3
