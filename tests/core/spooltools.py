"""Helpers the outage, damage and race tests share: queue rows without sending them,
damage a page of the spool, read it back, wait for a condition."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from postbud._message import build_message
from postbud._outbox import Outbox, Priority
from postbud.testing import FakeGmail

TO = "you@example.com"


def keep(fake: FakeGmail, spool: Path, subjects: list[str]) -> None:
    """Rows queued in the spool by a process that sent nothing."""
    reader = Outbox.open(fake.settings(spool=str(spool)))
    for subject in subjects:
        envelope = build_message(mail_from=fake.username, to=TO, subject=subject, text="x")
        assert reader.keep(envelope, Priority.NORMAL)
    reader.close(0)


def damage_page(spool: Path, name: str) -> None:
    """Write garbage over the root page of table or index ``name``."""
    with closing(sqlite3.connect(spool)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,))
        page = found.fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    with open(spool, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xde\xad\xbe\xef" * (size // 4))


def rows(spool: Path) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(spool)) as db, db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY id")]


def wait_for(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
