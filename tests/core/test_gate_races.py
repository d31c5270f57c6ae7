"""Races and long outages around the gates and the salvage (issue 16), each found by a
hostile review of the first version: a success with new credentials un-pausing old
ones, a backoff kept in memory that never ended, a long outage overflowing the
backoff, a token-endpoint outage retried every poll, a process writing into a spool
another one had moved aside, a delivered row resent after another thread salvaged,
a partly retried message counted as sent twice, 'postbud outbox retry' undone by the
worker's cached pause."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from spooltools import damage_page, keep

from postbud import Mailer
from postbud._message import build_message
from postbud._outbox import Outbox, Priority, RetryPolicy
from postbud._outbox.gates import Gates
from postbud._outbox.spool import DiskSpool
from postbud._outbox.state import Gate, SQLiteState, StateUnavailable, connect_gate, login_gate
from postbud.testing import FakeGmail, FakeGoogleTokens

TO = "you@example.com"
WRONG = "wrongwrongwrongw"
FAST = RetryPolicy(base_delay=0.01, poll=0.05)
OUTAGE = RetryPolicy(base_delay=0.01, connect_base=0.05, connect_max=0.4, poll=0.05)
MALFORMED = "database disk image is malformed"


def test_a_success_with_new_credentials_keeps_the_old_ones_paused(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = str(tmp_path / "o.sqlite")
    old = Mailer(fake_gmail.settings(app_password=WRONG, spool=spool), policy=FAST)
    new = Mailer(fake_gmail.settings(spool=spool), policy=FAST)
    try:
        old.submit(TO, "a", "x")
        assert old.flush(5)
        for n in range(5):  # the fixed process sends; the stale one keeps running
            new.send(TO, f"ok {n}", "x")
            old.submit(TO, f"b{n}", "x")
            time.sleep(0.3)
        assert len(fake_gmail.failed_logins) == 1  # the refused password: never again
    finally:
        old.close(0)
        new.close(0)


def test_a_backoff_kept_in_memory_while_the_spool_was_busy_ends(
    fake_gmail: FakeGmail, postbud_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = SQLiteState.set_gate
    calls = [0]

    def flaky(self: SQLiteState, name: str, gate: Gate) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise StateUnavailable("the spool is busy (database is locked)")
        real(self, name, gate)

    monkeypatch.setattr(SQLiteState, "set_gate", flaky)
    fake_gmail.disconnect_next("CONNECT", times=1)  # one failed connection
    with Mailer(fake_gmail.settings(), policy=OUTAGE) as m:
        m.submit(TO, "m", "x")
        time.sleep(1.0)  # the backoff (0.05 s) ended long ago
        cpu = time.process_time()
        time.sleep(1.0)
        cpu = time.process_time() - cpu
        assert len(fake_gmail.messages) == 1
        assert cpu < 0.2


def test_a_very_long_outage_does_not_overflow_the_backoff(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    with Mailer(fake_gmail.settings(), policy=FAST) as m:
        s = fake_gmail.settings()
        # ~1,030 failed probes in a row (a cron run a minute for 17 hours)
        m.outbox.gates.state.set_gate(
            connect_gate(s.username, s.host, s.port), Gate(0.0, 0.0, 1030, "reset")
        )
        m.submit(TO, "after the outage", "x")
        assert m.flush(3)
    assert len(fake_gmail.messages) == 1


def test_another_process_follows_a_salvaged_spool_before_it_writes(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = tmp_path / "o.sqlite"
    # B polls rarely: only its writes can notice that the file was moved aside.
    b = Mailer(fake_gmail.settings(spool=str(spool)), policy=RetryPolicy(base_delay=0.01, poll=30))
    try:
        b.submit(TO, "warm-up", "x")
        assert b.flush(5)  # B's connections are open
        keep(fake_gmail, spool, ["a", "b", "c"])
        damage_page(spool, "ledger")
        with Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as a:
            assert a.flush(10)  # A salvages; a, b, c go out
        b.submit(TO, "y", "x")  # into the fresh spool, not the damaged copy
        time.sleep(3)
        b.flush(3)
    finally:
        b.close(1)
    assert sorted(str(m["Subject"]) for m in fake_gmail.messages) == [
        "a",
        "b",
        "c",
        "warm-up",
        "y",
    ]


def test_a_partly_retried_message_is_counted_sent_once(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    with Mailer(fake_gmail.settings(), policy=RetryPolicy(base_delay=0.01, jitter=False)) as m:
        fake_gmail.fail_next("RCPT", "451 4.3.0 Mail server temporarily rejected message.")
        m.submit(["a@example.com", "b@example.com"], "one message", "x")
        assert m.flush(5)
        assert m.stats()["sent"] == 1


def test_outbox_retry_is_not_undone_by_the_workers_cached_pause(
    fake_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Gates.blocked

    def slow(self: Gates, now: float) -> Gate | None:  # widen the window
        gate = real(self, now)
        time.sleep(0.05)
        return gate

    monkeypatch.setattr(Gates, "blocked", slow)
    s = fake_gmail.settings(spool=str(tmp_path / "o.sqlite"))
    reader = Outbox.open(s)
    envelope = build_message(mail_from=s.username, to=TO, subject="w", text="x")
    reader.keep(envelope, Priority.NORMAL)
    reader.gates.state.set_gate(login_gate(s.username), Gate(math.inf, time.time(), 1, "535"))
    reader.close(0)
    m = Mailer(s)  # starts its worker: rows are pending
    try:
        time.sleep(0.01)
        m.outbox.retry_pending(clear_pauses=True)  # what `postbud outbox retry` does
        ok = m.flush(5)
    finally:
        m.close(0)
    assert ok and len(fake_gmail.messages) == 1


def test_a_delivered_row_is_not_resent_when_another_thread_salvaged_first(
    fake_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sent = DiskSpool.sent
    state: dict[str, Any] = {"mailer": None, "done": False}

    def sent(self: DiskSpool, item: Any, record: Any) -> None:
        if not state["done"]:
            state["done"] = True
            # a flush() or pending() in another thread hits the same damage while
            # this delivery is not settled yet: its salvage waits for the worker
            # (outbox.delivering), so the message is never saved into the fresh spool.
            other = threading.Thread(
                target=state["mailer"].outbox.recover, args=(sqlite3.DatabaseError(MALFORMED),)
            )
            state["other"] = other
            other.start()
            other.join(0.3)
            assert other.is_alive()  # waiting, not salvaging under the delivery
            raise sqlite3.DatabaseError(MALFORMED)
        real_sent(self, item, record)

    monkeypatch.setattr(DiskSpool, "sent", sent)
    settings = fake_gmail.settings(spool=str(tmp_path / "o.sqlite"), timeout=1)
    with Mailer(settings, policy=FAST) as m:
        state["mailer"] = m
        m.submit(TO, "once", "x")
        assert m.flush(10)
        time.sleep(1)
        state["other"].join(10)
        assert not state["other"].is_alive()
    assert [r["Subject"] for r in fake_gmail.messages] == ["once"]


def test_a_token_endpoint_outage_backs_off(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    path = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    fake_google_tokens.fail_next(500, times=10_000)  # the token endpoint down a while
    s = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(path),
        oauth_token_uri=fake_google_tokens.token_uri,
    )
    policy = RetryPolicy(base_delay=0.01, connect_base=0.05, connect_max=5.0)
    with Mailer(s, policy=policy) as m:
        for n in range(20):
            m.submit(TO, f"m{n}", "x")
        time.sleep(1.5)  # 0.05, 0.1, 0.2, 0.4, 0.8 s: a growing wait, not one a poll
        assert len(fake_google_tokens.requests) <= 8
        m.close(0)
