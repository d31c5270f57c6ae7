"""The outbox: submit without waiting, retries, the spool, leases, quota, flush/close."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import postbud
from postbud import Mailer
from postbud._message import Envelope, build_message
from postbud._outbox import Priority, RetryPolicy
from postbud.errors import InvalidMessageError, QuotaExceededError
from postbud.testing import FakeGmail, MemoryTransport, replies

TO = "you@example.com"
ME = "postbud.test@gmail.com"


NORMAL, ALERT = Priority.NORMAL, Priority.ALERT
FAST = RetryPolicy(base_delay=0.01)


def fast(fake: FakeGmail, policy: RetryPolicy = FAST, **overrides: Any) -> Mailer:
    """A Mailer for ``fake`` whose retries come after tens of milliseconds."""
    return Mailer(fake.settings(**overrides), policy=policy)


@pytest.fixture
def mailer(fake_gmail: FakeGmail) -> Iterator[Mailer]:
    m = fast(fake_gmail)
    yield m
    m.close()


def rows(spool: Path, where: str = "1") -> list[dict[str, object]]:
    with closing(sqlite3.connect(spool)) as db, db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM outbox WHERE {where} ORDER BY id")]


def subjects(fake: FakeGmail) -> list[str | None]:
    return [m["Subject"] for m in fake.messages]


# -- the non-blocking path ------------------------------------------------------------------


def test_submit_returns_the_message_id_and_the_worker_delivers(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    message_id = mailer.submit(TO, "Queued", "x")
    assert message_id.startswith("<") and message_id.endswith("@gmail.com>")
    assert mailer.flush(10) is True
    [received] = fake_gmail.messages
    assert received["Message-ID"] == message_id
    assert rows(postbud_spool) == []  # sent rows are deleted
    stats = mailer.stats()
    assert (stats["submitted"], stats["sent"], stats["queued"], stats["quota_used"]) == (1, 1, 0, 1)


def test_a_bad_message_raises_at_once(mailer: Mailer, postbud_spool: Path) -> None:
    with pytest.raises(InvalidMessageError, match="not a valid email address"):
        mailer.submit("nobody@", "x", "x")
    with pytest.raises(InvalidMessageError, match="priority must be 'normal' or 'alert'"):
        mailer.submit(TO, "x", "x", priority="urgent")  # type: ignore[arg-type]
    assert mailer.stats()["submitted"] == 0


def test_the_worker_has_its_own_connection(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "blocking", "x")
    mailer.submit(TO, "queued", "x")
    assert mailer.flush(10)
    assert fake_gmail.connections == 2
    assert sorted(s or "" for s in subjects(fake_gmail)) == ["blocking", "queued"]


def test_alerts_go_before_ordinary_mail(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.delay(0.3, "DATA")  # the first message keeps the worker busy
    mailer.submit(TO, "normal 1", "x")
    time.sleep(0.1)
    mailer.submit(TO, "normal 2", "x")
    mailer.submit(TO, "normal 3", "x")
    mailer.submit(TO, "ALERT", "x", priority="alert")
    assert mailer.flush(10)
    assert subjects(fake_gmail) == ["normal 1", "ALERT", "normal 2", "normal 3"]


def test_memory_queue_is_bounded_and_drops_the_oldest_normal(fake_gmail: FakeGmail) -> None:
    fake_gmail.delay(0.3, "DATA")
    with fast(fake_gmail, spool=None, queue_size=2) as m:
        m.submit(TO, "in flight", "x")
        time.sleep(0.1)
        for subject in ("a", "b", "c"):
            m.submit(TO, subject, "x")
        m.submit(TO, "alert", "x", priority="alert")
        assert m.flush(10)
        assert m.stats()["dropped"] == 2
    assert subjects(fake_gmail) == ["in flight", "alert", "c"]


# -- retries ----------------------------------------------------------------------------------


def test_server_down_at_first_then_up(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.disconnect_next("CONNECT", times=2)
    message_id = mailer.submit(TO, "eventually", "x")
    assert mailer.flush(10)
    assert [m["Message-ID"] for m in fake_gmail.messages] == [message_id]
    assert mailer.stats()["retried"] == 2


def test_421_mid_batch(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    for n in range(2):
        mailer.submit(TO, f"m{n}", "x")
    assert mailer.flush(10)
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER, close=True, times=2)
    for n in range(2, 5):
        mailer.submit(TO, f"m{n}", "x")
    assert mailer.flush(10)
    assert sorted(s or "" for s in subjects(fake_gmail)) == ["m0", "m1", "m2", "m3", "m4"]


def test_drop_mid_data_is_retried_and_delivered_once(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.disconnect_next("DATA")
    message_id = mailer.submit(TO, "once", "x" * 5000)
    assert mailer.flush(10)
    assert [m["Message-ID"] for m in fake_gmail.messages] == [message_id]


def test_too_many_logins_backs_off_for_minutes(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    fake_gmail.fail_next("AUTH", replies.TOO_MANY_LOGINS)
    mailer.submit(TO, "later", "x")
    assert mailer.flush(2)  # settled: its retry is more than 2 s away
    [row] = rows(postbud_spool)
    waits = mailer.outbox.waits()  # the account's logins wait, for every row and process
    assert waits is not None and waits[0] == "login" and waits[1].until - time.time() > 250
    assert row["last_code"] == 454 and row["attempts"] == 1


def test_permanent_refusal_is_dead_lettered_with_its_reason(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    fake_gmail.bad_recipients = {"nobody@example.com"}
    mailer.submit("nobody@example.com", "never", "x")
    assert mailer.flush(10)
    [row] = rows(postbud_spool)
    assert row["state"] == "dead" and row["last_code"] == 553
    assert "5.1.3" in str(row["last_error"]) and "RFC 5321" in str(row["hint"])
    assert mailer.stats()["dead"] == 1 and mailer.stats()["queued"] == 0


def test_a_split_message_retries_only_the_recipients_not_yet_accepted(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    fake_gmail.fail_next(
        "RCPT",
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly. {id} - gsmtp",
    )
    fake_gmail.bad_recipients = {"gone@example.com"}
    message_id = mailer.submit(["slow@example.com", "b@example.com", "gone@example.com"], "s", "x")
    assert mailer.flush(10)
    assert [m.recipients for m in fake_gmail.messages] == [
        ("b@example.com",),
        ("slow@example.com",),
    ]
    assert {m["Message-ID"] for m in fake_gmail.messages} == {message_id}
    [dead] = rows(postbud_spool)  # the permanent refusal, kept with its reason
    assert json.loads(str(dead["recipients"])) == ["gone@example.com"]
    assert dead["state"] == "dead" and dead["last_code"] == 553


def test_max_age_gives_up(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    fake_gmail.fail_next("MAIL", replies.TEMPORARY_REJECTION, times=1000)
    with fast(fake_gmail, max_age=1) as m:
        m.submit(TO, "too late", "x")
        time.sleep(1.2)
        assert m.flush(10)
        assert m.stats()["dead"] == 1
    [row] = rows(postbud_spool)
    assert row["state"] == "dead" and "gave up after max_age" in str(row["last_error"])


# -- Gmail's daily limit and our ledger -----------------------------------------------------


def test_daily_limit_holds_without_dead_letters(
    fake_gmail: FakeGmail, postbud_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED, times=2)
    with fast(fake_gmail, RetryPolicy(base_delay=0.01, hold=0.5)) as m:
        message_id = m.submit(TO, "held", "x")
        deadline = time.monotonic() + 10
        while m.stats()["held"] < 2 and time.monotonic() < deadline:  # held, probed, held
            time.sleep(0.05)
        assert m.stats()["dead"] == 0
        assert m.flush(10)
        assert m.stats()["held"] == 2
    assert [r["Message-ID"] for r in fake_gmail.messages] == [message_id]
    assert rows(postbud_spool) == []


def test_hold_delays_the_probe_by_an_hour(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    fake_gmail.fail_next("DATA", replies.DAILY_LIMIT_EXCEEDED)
    mailer.submit(TO, "held", "x")
    assert mailer.flush(2)
    [row] = rows(postbud_spool)
    assert row["state"] == "queued"
    assert 3500 < float(str(row["next_try"])) - time.time() <= 3600
    mailer.submit(TO, "also waits", "x")
    assert mailer.flush(1)
    assert fake_gmail.messages == []


def test_quota_limit_and_alert_reserve(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postbud")
    with fast(fake_gmail, daily_limit=10, alert_reserve=0.2) as m:
        m.send([f"u{i}@example.com" for i in range(7)], "seven", "x")
        connections = fake_gmail.connections
        with pytest.raises(QuotaExceededError) as info:
            m.send(["a@example.com", "b@example.com"], "two more", "x")  # 9 > 8
        assert fake_gmail.connections == connections  # refused before connecting
        assert info.value.retryable and info.value.retry_after is not None
        assert info.value.retry_after > 86000
        assert "ordinary mail stops at 8 to keep room for alerts" in str(info.value)
        m.submit(["a@example.com", "b@example.com"], "alert", "x", priority="alert")
        assert m.flush(10)
        assert m.stats()["quota_used"] == 9
    messages = [r.getMessage() for r in caplog.records]
    assert any("are used (80 % or more)" in t for t in messages)
    # The blocking send's caller got the error; no line says that its mail waits.
    assert not any("leaves no room" in t for t in messages)


def test_ledger_is_shared_through_the_spool(fake_gmail: FakeGmail) -> None:
    with fast(fake_gmail, daily_limit=5) as a, fast(fake_gmail, daily_limit=5) as b:
        a.send([f"u{i}@example.com" for i in range(4)], "four", "x")
        assert b.stats()["quota_used"] == 4
        with pytest.raises(QuotaExceededError):
            b.send(["x@example.com", "y@example.com"], "two", "x")


# -- the spool ----------------------------------------------------------------------------------


def test_spool_file_mode_is_0600(mailer: Mailer, postbud_spool: Path) -> None:
    mailer.submit(TO, "x", "x")
    assert mailer.flush(10)
    for path in (postbud_spool, Path(f"{postbud_spool}-wal")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_unwritable_spool_falls_back_to_memory(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with fast(fake_gmail, spool=str(blocker / "outbox.sqlite")) as m:
        assert "cannot use the spool" in caplog.text and "kept in memory" in caplog.text
        m.submit(TO, "from memory", "x")
        assert m.flush(10)
    assert subjects(fake_gmail) == ["from memory"]


def test_busy_spool_spills_to_memory(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mailer.submit(TO, "first", "x")
    assert mailer.flush(10)
    other = sqlite3.connect(postbud_spool, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the spool
    try:
        start = time.monotonic()
        mailer.submit(TO, "spilled", "x")
        assert time.monotonic() - start < 0.5  # submit did not wait for the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert mailer.flush(10)
    assert mailer.stats()["spilled"] == 1
    assert "could not take a message" in caplog.text
    assert subjects(fake_gmail) == ["first", "spilled"]


def test_rows_belong_to_their_account(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    with fast(fake_gmail, port=1, exit_timeout=0.2) as unreachable:  # nothing on port 1
        unreachable.submit(TO, "mine", "x")
        unreachable.flush(0.2)
    transport = MemoryTransport()
    with Mailer(username="other@gmail.com", app_password="x", transport=transport) as other:
        other.submit(TO, "theirs", "x")  # its worker runs on the same spool...
        assert other.flush(5)
    assert [m["Subject"] for m in transport.messages] == ["theirs"]  # ...and leaves ours
    with fast(fake_gmail) as same_account:  # another host: still its row
        assert same_account.flush(10)
    assert subjects(fake_gmail) == ["mine"]


def test_close_flushes_and_keeps_the_rest(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    m = fast(fake_gmail, exit_timeout=0.3)
    fake_gmail.fail_next("AUTH", replies.TOO_MANY_LOGINS)  # retry in 5 minutes
    m.submit(TO, "waits", "x")
    start = time.monotonic()
    m.close()
    assert time.monotonic() - start < 2
    [row] = rows(postbud_spool)
    assert row["state"] == "queued"  # not lost: the next Mailer will send it


def test_flush_without_anything_queued_is_true_and_quick(mailer: Mailer) -> None:
    start = time.monotonic()
    assert mailer.flush(5) is True
    assert time.monotonic() - start < 0.5


def test_flush_gives_up_at_its_deadline(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.delay(2, "DATA")
    mailer.submit(TO, "slow", "x")
    start = time.monotonic()
    assert mailer.flush(0.3) is False
    assert time.monotonic() - start < 1


def test_close_without_time_starts_no_worker(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    # The command line keeps a row for the next run, then closes with timeout 0: no
    # worker may start then and race the process's exit with that row.
    m = fast(fake_gmail)
    assert m.outbox.keep(m.build(TO, "for the next run", "x"), NORMAL)
    assert m.flush(0) is False
    m.close(timeout=0)
    assert m.outbox.thread is None
    time.sleep(0.2)
    assert fake_gmail.messages == []
    assert [r["state"] for r in rows(postbud_spool)] == ["queued"]


def test_alert_share_is_tracked(fake_gmail: FakeGmail) -> None:
    with fast(fake_gmail, daily_limit=10, alert_max_share=0.3) as m:
        m.submit(["a@example.com", "b@example.com"], "alert 1", "x", priority="alert")
        m.submit(["c@example.com", "d@example.com", "e@example.com"], "normal", "x")
        assert m.flush(10)
        assert not m.outbox.alerts_over_share()  # 2 of 10 < 30 %
        m.submit("f@example.com", "alert 2", "x", priority="alert")
        assert m.flush(10)
        assert m.outbox.alerts_over_share()  # 3 of 10: the share is used
        assert m.stats()["quota_used"] == 6


@pytest.mark.parametrize("one_statement", [True, False], ids=["sqlite>=3.16", "older"])
def test_spool_size_cap(
    fake_gmail: FakeGmail,
    mailer: Mailer,
    postbud_spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_statement: bool,
) -> None:
    from postbud._outbox import spool as _spool

    monkeypatch.setattr(_spool, "_ONE_STATEMENT", one_statement)  # SQLite before 3.16
    fake_gmail.bad_recipients = {"nobody@example.com"}
    mailer.submit("nobody@example.com", "dead letter", "x" * 50_000)
    assert mailer.flush(10)
    assert [r["state"] for r in rows(postbud_spool)] == ["dead"]
    with closing(sqlite3.connect(postbud_spool)) as db, db:  # pages in use, WAL included
        size = _spool._bytes(db)
    # The pages alone here (the WAL's part: test_the_wal_file_counts_in_the_spool_cap).
    monkeypatch.setattr(_spool.DiskSpool, "_room", lambda self: _spool.MAX_SPOOL_BYTES)
    monkeypatch.setattr(_spool, "MAX_SPOOL_BYTES", size + 1000)
    fake_gmail.delay(0.5, "DATA")  # keep the next one queued while we look
    mailer.submit(TO, "big", "y" * 30_000)  # over the cap: dead letters go first
    assert [r["state"] for r in rows(postbud_spool)] == ["queued"]  # the dead letter left
    mailer.submit(TO, "too big for the cap", "z" * 200_000)  # still over: memory
    assert mailer.stats()["spilled"] == 1
    assert mailer.flush(10)
    assert sorted(s or "" for s in subjects(fake_gmail)) == ["big", "too big for the cap"]


def test_the_wal_file_counts_in_the_spool_cap(
    postbud_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postbud._outbox import QueueBusy
    from postbud._outbox import spool as _spool
    from postbud._outbox.db import Database

    database = Database(str(postbud_spool))
    spool = _spool.DiskSpool(database, ME)
    envelope = build_message(mail_from=ME, to=TO, subject="s", text="x" * 20_000)
    with closing(sqlite3.connect(postbud_spool)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM outbox").fetchall()  # a snapshot: WAL stays
        for _ in range(20):  # 20 rows written and deleted: the WAL holds their pages
            spool.add(envelope, NORMAL, time.time())
            with database.transaction() as db:
                db.execute("DELETE FROM outbox")
        database.checkpoint()
        wal = os.stat(f"{postbud_spool}-wal").st_size
        assert wal > 200_000
        with closing(sqlite3.connect(postbud_spool)) as db:
            pages = _spool._bytes(db)
        monkeypatch.setattr(_spool, "MAX_SPOOL_BYTES", pages + 100_000)  # the pages fit
        time.sleep(0.06)  # the WAL's size is read at most every 50 ms
        with pytest.raises(QueueBusy, match="the spool is full"):
            spool.add(envelope, NORMAL, time.time())
        reader.rollback()
    database.close()


def test_a_refused_login_pauses_instead_of_failing_every_message(
    fake_gmail: FakeGmail, postbud_spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with fast(fake_gmail, app_password="wrongwrongwrongw", exit_timeout=0.2) as m:
        for n in range(3):
            m.submit(TO, f"m{n}", "x")
        assert m.flush(5)  # settled: everything waits for new credentials
        assert m.stats()["dead"] == 0  # a refused login never costs mail
    assert fake_gmail.failed_logins == [fake_gmail.username]  # one login, not three
    states = [r["state"] for r in rows(postbud_spool)]
    assert states == ["queued", "queued", "queued"]
    assert "pauses logins for postbud.test@gmail.com" in caplog.text


def test_a_busy_spool_after_delivery_does_not_send_twice(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    import threading

    fake_gmail.delay(0.2, "DATA")
    message_id = mailer.submit(TO, "once", "x")
    other = sqlite3.connect(postbud_spool, isolation_level=None, check_same_thread=False)

    def hold_the_lock() -> None:  # another process writes for 0.8 s as Gmail accepts
        deadline = time.monotonic() + 5
        while "DATA" not in fake_gmail.commands and time.monotonic() < deadline:
            time.sleep(0.01)
        other.execute("BEGIN IMMEDIATE")
        time.sleep(0.8)
        other.execute("ROLLBACK")

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert mailer.flush(10)
    holder.join()
    other.close()
    with fast(fake_gmail) as successor:  # would find a leftover row, if any
        assert successor.flush(5)
    assert [m["Message-ID"] for m in fake_gmail.messages] == [message_id]


def test_the_lease_is_renewed_between_transactions(fake_gmail: FakeGmail) -> None:
    fake_gmail.max_recipients = 25  # 100 recipients: four transactions
    fake_gmail.delay(0.7, "DATA")  # each slower than half the 2 s lease
    people = [f"u{n}@example.com" for n in range(100)]
    with fast(fake_gmail, timeout=1) as first, fast(fake_gmail, timeout=1) as second:
        first.submit(people, "big", "x")
        second.submit(TO, "small", "x")  # its worker polls the same spool meanwhile
        assert first.flush(20)
        assert second.flush(20)
    delivered = [r for m in fake_gmail.messages for r in m.recipients]
    assert sorted(delivered) == sorted([*people, TO])  # every recipient exactly once


def test_a_mailer_used_again_right_after_close(fake_gmail: FakeGmail) -> None:
    m = fast(fake_gmail)
    m.submit(TO, "before", "x")
    assert m.flush(10)
    fake_gmail.delay(2, "QUIT")  # the old worker is still saying goodbye
    start = time.monotonic()
    m.close()
    assert time.monotonic() - start < 1.5  # close() does not wait for a slow QUIT
    m.submit(TO, "after", "x")
    assert m.flush(8)
    m.close()
    assert subjects(fake_gmail) == ["before", "after"]


def _submit_spilled(m: Mailer, spool: Path) -> None:
    """Submit one message while another connection locks the spool: it goes to memory."""
    other = sqlite3.connect(spool, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    m.submit(TO, "spilled", "x")
    other.execute("ROLLBACK")
    other.close()


def _wait_until(condition: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_close_keeps_spilled_mail_in_the_spool(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    m = fast(fake_gmail, port=1, exit_timeout=0)  # nothing delivers in this test
    m.submit(TO, "on disk", "x")
    _submit_spilled(m, postbud_spool)
    worker = m.outbox.thread
    m.close()
    # The worker may be trying the spilled one as close() gives up waiting (timeout 0):
    # it goes to the spool when that attempt fails.
    assert worker is not None
    worker.join(10)
    assert m.stats()["spilled"] == 1 and m.stats()["dropped"] == 0
    assert [r["state"] for r in rows(postbud_spool)] == ["queued", "queued"]  # both kept


def test_a_memory_message_still_in_flight_at_close_goes_to_the_spool_if_it_fails(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    m = fast(fake_gmail, exit_timeout=0)
    fake_gmail.delay(0.5, "MAIL")
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER)
    _submit_spilled(m, postbud_spool)
    _wait_until(lambda: m.outbox.memory._in_flight)
    worker = m.outbox.thread
    assert worker is not None and m.outbox.memory._in_flight  # being sent now
    m.close()  # exit_timeout=0: does not wait for that attempt
    worker.join(10)  # the 421 comes, the message comes back for a retry...
    assert [(r["state"], r["attempts"]) for r in rows(postbud_spool)] == [("queued", 1)]
    assert m.stats()["dropped"] == 0 and fake_gmail.messages == []


def test_a_memory_retry_moved_to_the_spool_at_close_keeps_its_age_and_next_try(
    fake_gmail: FakeGmail, postbud_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = fast(fake_gmail, RetryPolicy(base_delay=30.0, jitter=False), exit_timeout=0)
    fake_gmail.fail_next("MAIL", replies.TEMPORARY_REJECTION)
    _submit_spilled(m, postbud_spool)
    _wait_until(lambda: m.outbox.memory._later)
    (retry,) = m.outbox.memory._later  # refused once, waiting for its retry
    m.close()
    (row,) = rows(postbud_spool)
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert row["created"] == pytest.approx(retry.created)
    assert row["next_try"] == pytest.approx(retry.next_try)


def test_a_submit_never_joins_a_transaction_left_open_on_the_spool(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    m = fast(fake_gmail, port=1, exit_timeout=0)  # nothing delivers in this test
    m.submit(TO, "first", "x")
    spool = m.outbox.spool
    assert spool is not None
    spool.database._front.db.execute("BEGIN")  # as if interrupted between BEGIN and COMMIT
    m.submit(TO, "second", "x")
    assert len(rows(postbud_spool)) == 2  # committed: another connection sees it
    m.close()


def test_a_full_memory_queue_never_drops_an_alert_for_a_normal_message() -> None:
    from postbud._outbox.memory import MemoryQueue

    def envelope(subject: str) -> object:
        return build_message(mail_from="me@gmail.com", to=TO, subject=subject, text="x")

    queue = MemoryQueue(2)
    assert queue.add(envelope("alert 1"), ALERT, 1.0) is None  # type: ignore[arg-type]
    assert queue.add(envelope("alert 2"), ALERT, 2.0) is None  # type: ignore[arg-type]
    dropped = queue.add(envelope("normal"), NORMAL, 3.0)  # type: ignore[arg-type]
    assert dropped is not None and dropped.priority == NORMAL  # the new one goes
    dropped = queue.add(envelope("alert 3"), ALERT, 4.0)  # type: ignore[arg-type]
    assert dropped is not None and dropped.key == 1  # an alert makes room for an alert


def _envelopes(n: int) -> list[Envelope]:
    return [
        build_message(mail_from="me@gmail.com", to=TO, subject=f"m{i}", text="x") for i in range(n)
    ]


def test_the_memory_queue_sends_alerts_first_then_the_oldest_retries_included() -> None:
    from postbud._outbox.memory import MemoryQueue

    queue = MemoryQueue(10)
    a, b, c, d = _envelopes(4)
    queue.add(a, NORMAL, 1.0)
    first = queue.claim(1.0)
    assert first is not None and first.envelope == a
    first.attempts, first.next_try = 1, 5.0
    queue.put_back(first)  # a retry, due at 5.0
    queue.add(b, NORMAL, 2.0)
    queue.add(c, ALERT, 3.0)
    queue.add(d, NORMAL, 4.0)
    assert queue.next_due() == 2.0 and len(queue) == 4
    assert queue.unsettled(upto=3, horizon=4.0) == 2  # b, c: the retry waits beyond 4.0
    order = []
    while (item := queue.claim(6.0)) is not None:
        order.append(item.envelope)
        queue.done(item)
    assert order == [c, a, b, d]  # the alert, then by age: the retry of a before b
    assert len(queue) == 0 and queue.next_due() is None


def test_a_full_memory_queue_drops_the_oldest_normal_message_retries_included() -> None:
    from postbud._outbox.memory import MemoryQueue

    queue = MemoryQueue(2)
    a, b, c, d = _envelopes(4)
    queue.add(a, NORMAL, 1.0)
    retry = queue.claim(1.0)
    assert retry is not None
    retry.attempts, retry.next_try = 1, 100.0
    queue.put_back(retry)
    queue.add(b, NORMAL, 2.0)
    assert queue.add(c, NORMAL, 3.0) is retry  # full: the oldest normal one goes

    assert [i.envelope for i in queue.drain()] == [b, c]
    queue.add(a, ALERT, 4.0)
    alert = queue.claim(4.0)
    assert alert is not None
    alert.attempts, alert.next_try = 1, 100.0
    queue.put_back(alert)  # an alert waiting for its retry
    queue.add(b, NORMAL, 5.0)
    dropped = queue.add(d, NORMAL, 6.0)  # full: b goes, the alert keeps its time
    assert dropped is not None and dropped.envelope == b
    first = queue.claim(50.0)
    assert first is not None and first.envelope == d
    assert queue.claim(50.0) is None  # the alert's retry is not due yet
    later = queue.claim(150.0)
    assert later is alert


def test_a_queued_message_keeps_no_object_alive_for_the_collector() -> None:
    """While a slow server lets the memory queue grow, every object it keeps alive makes
    the garbage collector run sooner, in the caller's thread (bench_outbox.py)."""
    import gc

    from postbud._outbox.memory import MemoryQueue

    queue = MemoryQueue(1000)
    for n in range(501):  # the envelope is the caller's; the queue keeps its values
        queue.add(_envelopes(1)[0], NORMAL, float(n))
    fifo = queue._fresh[NORMAL]
    held = [value for name in fifo.FIELDS for value in getattr(fifo, name)]
    assert len(held) == 501 * len(fifo.FIELDS)
    # Only the recipients tuple is a container, one shared by all 501 messages.
    assert len({id(value) for value in held if gc.is_tracked(value)}) <= 1
    drained = queue.drain()  # every message is still there, whole
    assert len({i.envelope.message_id for i in drained}) == 501
    assert all(i.envelope.recipients == (TO,) for i in drained)
    assert all(b"Subject: m0" in i.envelope.data for i in drained)


def test_more_recipients_than_a_day_allows_is_dead_at_once(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    people = [f"u{n}@example.com" for n in range(12)]
    with fast(fake_gmail, daily_limit=10) as m:
        with pytest.raises(QuotaExceededError) as info:
            m.send(people, "too many", "x")
        assert info.value.retryable is False and "more than the 9 a day" in str(info.value)
        m.submit(people, "too many", "x")
        assert m.flush(5)
        assert m.stats()["dead"] == 1 and m.stats()["held"] == 0
    assert fake_gmail.connections == 0


def test_too_many_logins_pauses_all_logins(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("AUTH", replies.TOO_MANY_LOGINS)
    with fast(fake_gmail, exit_timeout=0.2) as m:
        for n in range(10):
            m.submit(TO, f"m{n}", "x")
        assert m.flush(2)  # all wait for the 5-minute pause, beyond the horizon
    assert fake_gmail.connections == 1  # one login, not ten


def test_a_dropped_mailers_worker_ends_when_idle(
    fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    m = fast(fake_gmail, RetryPolicy(base_delay=0.01, idle_exit=0.2))
    m.submit(TO, "x", "x")
    assert m.flush(10)
    worker = m.outbox.thread
    assert worker is not None
    worker.join(5)
    assert not worker.is_alive()
    assert "postbud-outbox" not in [t.name for t in threading.enumerate() if t is worker]
    m.submit(TO, "y", "x")  # a new submit starts a new worker
    assert m.flush(10)
    m.close()
    assert subjects(fake_gmail) == ["x", "y"]


def test_the_wal_is_emptied_once_the_queue_is_quiet(
    fake_gmail: FakeGmail, mailer: Mailer, postbud_spool: Path
) -> None:
    mailer.submit(TO, "reset", "https://example.com/reset/SECRET-MARKER-123")
    assert mailer.flush(10)
    wal = Path(f"{postbud_spool}-wal")
    _wait_until(lambda: not wal.exists() or not wal.stat().st_size)
    assert not wal.exists() or wal.stat().st_size == 0  # no delivered body left in it
    assert b"SECRET-MARKER-123" not in postbud_spool.read_bytes()  # nor in the file


def test_blocking_sends_keep_the_wal_small(tmp_path: Path) -> None:
    """send() records each message in the spool's ledger, and no worker runs to
    checkpoint the WAL: the callers' records checkpoint it every CHECKPOINT_EVERY, so a
    site that only sends blocking does not grow the WAL by ~13 KB a message, forever."""
    from postbud._outbox.state import CHECKPOINT_EVERY

    spool = tmp_path / "outbox.sqlite"
    settings = postbud.Settings(
        username="me@gmail.com", app_password="abcdabcdabcdabcd", spool=str(spool)
    )
    with Mailer(settings.replace(daily_limit=100_000), transport=MemoryTransport()) as m:
        for i in range(5 * CHECKPOINT_EVERY):
            m.send(TO, f"n{i}", "x")
        assert m.stats()["quota_used"] == 5 * CHECKPOINT_EVERY  # every one recorded
        wal = Path(f"{spool}-wal").stat().st_size
    assert wal < 1.5 * CHECKPOINT_EVERY * 13_000  # the WAL of one stretch, not five


def test_the_worker_keeps_delivering_while_callers_submit_without_pause(
    fake_gmail: FakeGmail,
) -> None:
    """The worker waits for a pause in the submits, but never more than
    CALLERS_MAX_WAIT per message: a steady stream of submits does not starve it."""
    with fast(fake_gmail, spool=None, daily_limit=10_000) as m:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # one submit a millisecond: no 2 ms pause
            m.submit(TO, "steady", "x")
            time.sleep(0.001)
        sent_meanwhile = m.stats()["sent"]
        assert m.flush(30)
    assert sent_meanwhile >= 5  # at most 20 ms of waiting per message (~25 in 0.6 s)
    assert len(fake_gmail.messages) == m.stats()["submitted"]


def test_the_memory_ledger_keeps_only_the_24_h_window() -> None:
    # Every process keeps its own count beside the spool's (the fallback when the spool
    # fails): recording prunes it, so a process running for months holds a day at most.
    from postbud._outbox.state import WINDOW, MemoryState

    state = MemoryState()
    for at in range(0, 3 * int(WINDOW), 60):  # three days, one delivery a minute
        state.record(ME, 2, at % 120 == 0, float(at))
    now = float(3 * int(WINDOW) - 60)
    entries = state._entries[ME]
    assert len(entries) == WINDOW // 60
    total, alerts, oldest = state.used(ME, now)
    assert (total, alerts) == (2 * len(entries), sum(2 for at, _, a in entries if a))
    assert oldest is not None and oldest > now - WINDOW
