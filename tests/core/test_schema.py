"""The spool's schema: one owner, a version, migrations from 0.1.0, newer files refused."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from postbud import Mailer
from postbud._outbox import SCHEMA_VERSION, Database, SchemaTooNew
from postbud.testing import FakeGmail

FIXTURE = Path(__file__).parent.parent / "fixtures" / "spool-0.1.0.sqlite"
# What 0.1.0 created with CREATE TABLE IF NOT EXISTS (the alert tables lazily).
OLD_TABLES = {"outbox", "ledger", "holds", "alert_scope", "alert_presence", "alert_state"}


@pytest.fixture
def old_spool(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.sqlite"
    shutil.copyfile(FIXTURE, path)
    path.chmod(0o600)
    return path


def tables(path: Path) -> dict[str, str]:
    with closing(sqlite3.connect(path)) as db, db:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


def version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db, db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_the_fixture_is_what_0_1_0_wrote() -> None:
    assert version(FIXTURE) == 0  # 0.1.0 stamped no version
    assert set(tables(FIXTURE)) == OLD_TABLES


def test_a_0_1_0_spool_opens_and_its_queued_rows_are_delivered(
    fake_gmail: FakeGmail, old_spool: Path
) -> None:
    before = tables(old_spool)
    # The fixture's account is the fake's; its two queued rows and the alert the old
    # handler decided on go out as soon as a Mailer of the account opens the file.
    with Mailer(fake_gmail.settings(spool=str(old_spool))) as mailer:
        assert mailer.flush(10)
        status = mailer.outbox.status()
        assert (status.queued, status.dead) == (0, 1)  # the dead letter stays dead
        assert [row.subject for row in mailer.outbox.rows()] == ["dead in 0.1.0"]
        assert status.quota_used >= 3  # the 3 sent now (0.1.0's entries age out)
    subjects = sorted(m["Subject"] or "" for m in fake_gmail.messages)
    # The old handler's first alert, the alert and the normal message 0.1.0 queued.
    assert subjects == ["[ERROR] app: from 0.1.0", "alert from 0.1.0", "normal from 0.1.0"]
    assert version(old_spool) == SCHEMA_VERSION
    # Additive: every table 0.1.0 made is there as it was, so 0.1.0 can still use it.
    after = tables(old_spool)
    assert {name: after[name] for name in before} == before
    with closing(sqlite3.connect(old_spool)) as db, db:
        # The other account's row is left alone.
        other = db.execute("SELECT state FROM outbox WHERE account = 'other@gmail.com'")
        assert other.fetchall() == [("queued",)]


def test_a_new_file_has_every_table_and_the_version(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Database(str(path)).close()
    assert set(tables(path)) == OLD_TABLES | {"gates", "ledger_total", "outbox_counts"}
    assert version(path) == SCHEMA_VERSION
    Database(str(path)).close()  # opening again migrates nothing and fails nothing
    assert version(path) == SCHEMA_VERSION


def test_a_file_from_a_newer_postbud_is_refused_and_mail_goes_to_memory(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "future.sqlite"
    Database(str(path)).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="written by a newer postbud"):
        Database(str(path))
    with caplog.at_level(logging.WARNING, logger="postbud"):
        mailer = Mailer(fake_gmail.settings(spool=str(path)))
    try:
        assert not mailer.outbox.shared  # memory, not the newer file
        assert "written by a newer postbud" in caplog.text
        mailer.submit("you@example.com", "from memory", "x")
        assert mailer.flush(10)
        assert [m["Subject"] for m in fake_gmail.messages] == ["from memory"]
    finally:
        mailer.close()
    assert version(path) == SCHEMA_VERSION + 1  # left as it was
    with closing(sqlite3.connect(path)) as db, db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


MIGRATE = """
import sys
from postbud._outbox import Database
sys.stdin.readline()  # every process starts migrating at the same moment
Database(sys.argv[1]).close()
print("ok")
"""


@pytest.mark.slow
def test_processes_migrating_the_same_old_file_at_once(old_spool: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, str(old_spool)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=60) for child in children]
    assert [out for out, _ in results] == ["ok\n"] * 4, [err for _, err in results]
    assert version(old_spool) == SCHEMA_VERSION
    with closing(sqlite3.connect(old_spool)) as db, db:  # nothing was lost or doubled
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (5,)


def test_a_mailer_dropped_without_close_closes_its_spool(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    import gc

    mailer = Mailer(fake_gmail.settings(spool=str(tmp_path / "outbox.sqlite")))
    assert mailer.outbox.spool is not None
    database = mailer.outbox.spool.database
    connections = [database._front.db, database._back.db]  # both opened
    del mailer, database
    gc.collect()  # the outbox and its worker object form a cycle
    for connection in connections:  # closed: Python 3.13 would warn "unclosed database"
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            connection.execute("SELECT 1")


def test_a_running_worker_does_not_keep_a_dropped_mailer_alive(fake_gmail: FakeGmail) -> None:
    import gc
    import weakref

    mailer = fake_gmail.mailer()
    mailer.submit("you@example.com", "dropped", "x")
    assert mailer.flush(10)
    outbox, worker = mailer.outbox, mailer.outbox.thread
    assert worker is not None and worker.is_alive()  # idles for a while before it ends
    alive = weakref.ref(mailer)
    del mailer
    gc.collect()
    assert alive() is None  # the worker holds the outbox, never the Mailer
    outbox.close(5)  # the worker leaves and closes its connection
    worker.join(5)
    assert not worker.is_alive()


def test_a_mailer_collected_after_sending_closes_its_connection(fake_gmail: FakeGmail) -> None:
    import gc
    import weakref

    mailer = fake_gmail.mailer()
    mailer.send("you@example.com", "sent now", "x")  # opens the Mailer's own connection
    own = mailer._transport
    assert own._smtp is not None  # type: ignore[attr-defined]
    collected = weakref.ref(mailer)
    del mailer
    gc.collect()
    assert collected() is None
    assert own._smtp is None  # type: ignore[attr-defined]  # no unclosed SSL socket


def test_a_mailer_collected_with_mail_queued_delivers_it_then_closes_the_spool(
    fake_gmail: FakeGmail,
) -> None:
    import gc
    import weakref

    from postbud._outbox import RetryPolicy

    fake_gmail.delay(0.3, "DATA")
    mailer = Mailer(fake_gmail.settings(), policy=RetryPolicy(idle_exit=0.2))
    mailer.submit("you@example.com", "after the Mailer is gone", "x")
    worker = mailer.outbox.thread
    assert worker is not None and mailer.outbox.spool is not None
    database = mailer.outbox.spool.database
    connections = [database._front.db, database._back.db]
    collected = weakref.ref(mailer)
    del mailer, database
    gc.collect()
    assert collected() is None  # its worker keeps the outbox, not the Mailer
    worker.join(10)  # it ends 0.2 s after the delivery
    assert not worker.is_alive()
    assert [m["Subject"] for m in fake_gmail.messages] == ["after the Mailer is gone"]
    gc.collect()  # the outbox and its worker object form a cycle
    for connection in connections:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            connection.execute("SELECT 1")


def test_a_version_1_file_gets_gates_and_ledger_totals_that_older_writers_keep_right(
    tmp_path: Path,
) -> None:
    from postbud._outbox.db import _SCHEMA_V1
    from postbud._outbox.state import SQLiteState

    path = tmp_path / "v1.sqlite"
    now = time.time()
    with closing(sqlite3.connect(path)) as db, db:
        for statement in _SCHEMA_V1:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?, ?)",
            [
                ("me@gmail.com", now - 10, 3, 0),
                ("me@gmail.com", now - 5, 2, 1),
                ("me@gmail.com", now - 90_000, 7, 0),  # out of the window already
            ],
        )
        db.execute("INSERT INTO holds VALUES ('me@gmail.com', ?, ?)", (now + 600, now - 60))
    database = Database(str(path))
    try:
        state = SQLiteState(database)
        assert version(path) == SCHEMA_VERSION
        assert state.used("me@gmail.com", now) == (5, 2, now - 10)
        hold = state.gate("hold:me@gmail.com")
        assert hold is not None and hold.until == now + 600 and hold.since == now - 60
        # An older postbud writes and trims the ledger without knowing the totals: the
        # triggers keep them right.
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("INSERT INTO ledger VALUES ('me@gmail.com', ?, 4, 1)", (now - 1,))
            db.execute("DELETE FROM ledger WHERE at < ?", (now - 86_400,))
        assert state.used("me@gmail.com", now) == (9, 6, now - 10)
        with closing(sqlite3.connect(path)) as db:
            totals = db.execute("SELECT recipients, alerts FROM ledger_total").fetchall()
        assert totals == [(9, 6)]
    finally:
        database.close()


def test_counts_kept_by_triggers_stay_exact_and_the_hourly_purge_recounts(
    tmp_path: Path,
) -> None:
    from postbud._outbox.spool import DiskSpool

    path = tmp_path / "counts.sqlite"
    database = Database(str(path))
    try:
        spool = DiskSpool(database, "a@gmail.com")
        with database.transaction() as db:  # postbud's own statements, every path
            for key, (account, state) in enumerate(
                [("a@gmail.com", "queued"), ("a@gmail.com", "dead"), ("b@gmail.com", "queued")], 1
            ):
                db.execute(
                    "INSERT INTO outbox (id, account, message_id, mail_from, recipients, data,"
                    " smtputf8, eightbit, priority, created, next_try, state) VALUES"
                    " (?, ?, 'm', 'f', '[]', x'', 0, 0, 1, 0, 0, ?)",
                    (key, account, state),
                )
            db.execute(
                "INSERT OR REPLACE INTO outbox (id, account, message_id, mail_from,"
                " recipients, data, smtputf8, eightbit, priority, created, next_try,"
                " state) VALUES (1, 'a@gmail.com', 'm', 'f', '[]', x'', 0, 0, 1, 0, 0,"
                " 'dead')"
            )  # REPLACE: the old row's DELETE trigger fires
            db.execute("UPDATE outbox SET state = 'queued' WHERE id = 2")
            db.execute("INSERT INTO ledger VALUES ('a@gmail.com', 1, 5, 1)")
            db.execute("UPDATE ledger SET recipients = 7")
        assert spool.counts() == (1, 1)
        with closing(sqlite3.connect(path)) as raw, raw:  # another writer, no triggers on
            raw.execute(
                "INSERT OR REPLACE INTO outbox (id, account, message_id, mail_from,"
                " recipients, data, smtputf8, eightbit, priority, created, next_try,"
                " state) VALUES (2, 'a@gmail.com', 'm', 'f', '[]', x'', 0, 0, 1, 0, 0,"
                " 'dead')"
            )
        spool.purge(time.time())
        assert spool.counts() == (0, 2)
        with closing(sqlite3.connect(path)) as raw:
            assert raw.execute("SELECT recipients, alerts FROM ledger_total").fetchall() == [(7, 7)]
    finally:
        database.close()


def test_the_next_due_time_comes_from_an_index_not_a_scan_of_the_queue(
    tmp_path: Path,
) -> None:
    from postbud._message import Envelope
    from postbud._outbox.spool import DiskSpool

    database = Database(str(tmp_path / "due.sqlite"))
    try:
        spool = DiskSpool(database, "a@gmail.com", lease=50.0)
        assert spool.next_due() is None
        for i, due in enumerate((300.0, 100.0, 200.0)):
            envelope = Envelope("a@gmail.com", ("b@example.com",), b"x", f"<{i}@x>", False, False)
            spool.add(envelope, 1, 0.0, next_try=due)
        assert spool.next_due() == 100.0
        # Leased rows count from their lease's end (or their own due time, if later).
        leased = spool.claim(150.0)
        assert leased is not None and leased.next_try == 100.0
        assert spool.next_due() == 200.0  # the lease runs to 200.0; the 200.0 row too
        assert spool.claim(160.0) is None  # nothing else due: the lease holds
        # Another account's earlier rows do not count.
        other = DiskSpool(database, "c@gmail.com")
        other.add(Envelope("c@gmail.com", ("b@example.com",), b"x", "<o@x>", False, False), 1, 0.0)
        assert spool.next_due() == 200.0 and other.next_due() == 0.0
        with database.transaction() as db:
            plan = " ".join(
                str(row[-1])
                for row in db.execute(
                    "EXPLAIN QUERY PLAN SELECT MIN(next_try) FROM outbox WHERE account = 'a' "
                    "AND state = 'queued' AND lease_until = 0"
                )
            )
        assert "outbox_wake" in plan and "SCAN" not in plan
    finally:
        database.close()
