"""A damaged, deleted or unrecordable spool (issue 16, point 3): nothing sent twice by
a process, what can be read is saved, and the user is told where the damage went."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from spooltools import damage_page, keep, wait_for

from postbud import Mailer
from postbud._outbox import QueueBusy, RetryPolicy
from postbud._outbox.spool import DiskSpool
from postbud.testing import FakeGmail

TO = "you@example.com"
FAST = RetryPolicy(base_delay=0.01, poll=0.05)


def test_a_damaged_index_moves_the_spool_aside_and_its_mail_still_goes_out(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "outbox.sqlite"
    keep(fake_gmail, spool, ["a", "b", "c"])
    damage_page(spool, "outbox_due")  # the queue's index: claims fail, the rows read
    with (
        caplog.at_level(logging.ERROR, logger="postbud"),
        Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m,
    ):
        assert m.flush(10)
    assert sorted(str(r["Subject"]) for r in fake_gmail.messages) == ["a", "b", "c"]
    [copy] = tmp_path.glob("outbox.sqlite.damaged-*[0-9]")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert f"was damaged: it was moved to {copy}, and 3 queued message(s) were saved" in errors[0]
    with closing(sqlite3.connect(spool)) as db:  # the fresh spool is sound and empty
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)
    assert os.stat(spool).st_mode & 0o777 == 0o600
    # postbud outbox status names the damaged copy and what to do with it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    values = fake_gmail.settings_values(spool=str(spool))
    env.update({f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})
    result = subprocess.run(
        [sys.executable, "-m", "postbud", "outbox", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"damaged:   {copy}" in result.stdout


def test_a_spool_that_is_not_a_database_never_fails_building_a_mailer(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "outbox.sqlite"
    keep(fake_gmail, spool, ["lost"])
    with open(spool, "r+b") as f:
        f.write(b"this is not SQLite" * 10)  # over the header
    for suffix in ("-wal", "-shm"):
        Path(f"{spool}{suffix}").unlink(missing_ok=True)
    with (
        caplog.at_level(logging.ERROR, logger="postbud"),
        Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m,
    ):
        m.submit(TO, "new", "x")  # the fresh spool works
        assert m.flush(10)
        assert m.outbox.shared
    assert [r["Subject"] for r in fake_gmail.messages] == ["new"]
    assert "and 0 queued message(s) were saved" in caplog.text
    assert len(list(tmp_path.glob("outbox.sqlite.damaged-*[0-9]"))) == 1


def test_a_delivered_row_the_spool_cannot_record_is_never_sent_again(
    fake_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "outbox.sqlite"
    real_sent = DiskSpool.sent
    failures = [QueueBusy("the spool is busy"), sqlite3.DatabaseError("disk image is malformed")]

    def flaky_sent(self: DiskSpool, item: Any, record: Any) -> None:
        if failures and item.envelope.message_id.startswith("<"):
            raise failures.pop(0)
        real_sent(self, item, record)

    monkeypatch.setattr(DiskSpool, "sent", flaky_sent)
    # timeout=1: a lease of 2 s, after which the row is claimed again.
    with Mailer(fake_gmail.settings(spool=str(spool), timeout=1), policy=FAST) as m:
        m.submit(TO, "once", "x")  # the first settle is busy: kept, settled later
        wait_for(lambda: not failures or len(failures) == 1)
        wait_for(lambda: m.outbox.queued() == 0, 15)
        m.submit(TO, "twice?", "x")  # the second settle finds the file damaged
        wait_for(lambda: not failures)
        assert m.flush(10)
        time.sleep(2.5)  # past the lease: nothing comes back
    assert [r["Subject"] for r in fake_gmail.messages] == ["once", "twice?"]


def test_a_spool_deleted_under_a_running_process_is_reported_once(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "outbox.sqlite"
    with (
        caplog.at_level(logging.ERROR, logger="postbud"),
        Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m,
    ):
        m.submit(TO, "before", "x")
        assert m.flush(10)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{spool}{suffix}").unlink(missing_ok=True)
        time.sleep(0.3)  # a few polls
        m.submit(TO, "after", "x")
        assert m.flush(10)
    assert [r["Subject"] for r in fake_gmail.messages] == ["before", "after"]
    assert caplog.text.count("was deleted while in use") == 1
    assert spool.exists()


def test_a_spool_truncated_to_nothing_under_a_running_process_is_reported(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "outbox.sqlite"
    with (
        caplog.at_level(logging.ERROR, logger="postbud"),
        Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m,
    ):
        m.submit(TO, "before", "x")
        assert m.flush(10)
        m.outbox.release()  # the file is written over while no connection is open
        with open(spool, "r+b") as f:
            f.truncate(0)
        for suffix in ("-wal", "-shm"):
            Path(f"{spool}{suffix}").unlink(missing_ok=True)
        m.submit(TO, "after", "x")
        assert m.flush(10)
    assert [r["Subject"] for r in fake_gmail.messages] == ["before", "after"]
    assert caplog.text.count("was damaged: it was moved to") == 1


def test_a_full_disk_keeps_the_quota_count_in_memory_and_records_it_later(
    fake_gmail: FakeGmail, postbud_spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Mailer(fake_gmail.settings(), policy=FAST) as m:
        m.send(TO, "first", "x")
        spool = m.outbox.spool
        assert spool is not None
        database, ledger = spool.database, m.outbox.ledger
        database.close()
        with closing(sqlite3.connect(postbud_spool)) as db:
            db.execute("VACUUM")  # no free page left
            pages = db.execute("PRAGMA page_count").fetchone()[0]
        for handle in (database._front, database._back):  # SQLITE_FULL on growth
            handle.db.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level(logging.WARNING, logger="postbud"):
            for _ in range(600):  # more entries than the last pages hold
                ledger.record(1, False, time.time())
        assert caplog.text.count("could not record sent recipients") == 1
        assert "the disk or the spool is full" in caplog.text
        assert m.stats()["quota_used"] == 601  # counted in memory meanwhile
        database.close()  # max_page_count is per connection: room again
        assert m.stats()["quota_used"] == 601  # and merged into the spool
    with closing(sqlite3.connect(postbud_spool)) as db:
        assert db.execute("SELECT SUM(recipients) FROM ledger").fetchone() == (601,)


# -- a spool setting that points at someone else's file (issue 17 review) ----------------


def cli(fake: FakeGmail, spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE"))
    }
    values = fake.settings_values(spool=str(spool))
    env.update({f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})
    return subprocess.run(
        [sys.executable, "-m", "postbud", *args],
        capture_output=True,
        text=True,
        env=env,
        input="body\n",
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["status", "list", "send", "mailer"])
def test_a_file_that_is_not_a_spool_is_left_exactly_as_it_is(
    fake_gmail: FakeGmail, tmp_path: Path, command: str, caplog: pytest.LogCaptureFixture
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("root:x:0:0:root:/root:/bin/bash\n")
    notes.chmod(0o644)
    before = (notes.read_bytes(), notes.stat().st_mode, notes.stat().st_ino)
    if command == "mailer":
        with (
            caplog.at_level(logging.WARNING, logger="postbud"),
            Mailer(fake_gmail.settings(spool=str(notes)), policy=FAST) as m,
        ):
            assert not m.outbox.shared  # memory, not that file
            m.send(TO, "still sent", "x")
        assert "is not a postbud spool (not an SQLite file, and readable by others)" in (
            caplog.text
        )
    elif command == "send":
        result = cli(fake_gmail, notes, "send", "--to", TO, "--subject", "still sent")
        assert result.returncode == 0, result.stderr
        assert "is not a postbud spool" in result.stderr
    else:
        cli(fake_gmail, notes, "outbox", command)
    after = (notes.read_bytes(), notes.stat().st_mode, notes.stat().st_ino)
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no .lock, no copy


def test_outbox_status_reports_a_damaged_spool_and_leaves_it_for_a_sending_command(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = tmp_path / "outbox.sqlite"
    keep(fake_gmail, spool, ["a", "b"])
    damage_page(spool, "outbox")
    before = spool.read_bytes()
    result = cli(fake_gmail, spool, "outbox", "status")
    assert result.returncode == 1
    assert f"{spool} is damaged (" in result.stderr
    assert "it is left as it is: the next postbud command that sends moves it" in result.stderr
    assert spool.read_bytes() == before and not list(tmp_path.glob("*.damaged-*"))
    result = cli(fake_gmail, spool, "send", "--to", TO, "--subject", "repairs")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("outbox.sqlite.damaged-*[0-9]"))) == 1
