"""Administration of the spool: what ``postbud outbox`` (and the framework commands) show and do.

Listing, reviving and deleting dead letters, and the status of the queue, as typed
records. Reading sends no mail and changes no row (opening the file may still migrate
its schema, and drop dead letters past their 30 days).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from postbud._config import Settings

from .ledger import Ledger
from .salvage import damaged_copies
from .spool import DiskSpool

__all__ = ["OutboxRow", "OutboxStatus", "forget_dead", "revive", "rows", "status"]


@dataclass(frozen=True)
class OutboxRow:
    """One message of the spool, without its body.

    Attributes:
        id: The row id (what ``postbud outbox retry ID`` takes).
        state: ``"queued"`` or ``"dead"``.
        subject: The decoded Subject header.
        recipients: Who still waits for it.
        priority: ``"alert"`` or ``"normal"``.
        created, next_try, dead_at: Unix times (``dead_at`` for dead letters only).
        attempts: Delivery attempts so far.
        last_code, last_error, hint: The last failure, if any.
    """

    id: int
    state: str
    message_id: str
    subject: str
    recipients: tuple[str, ...]
    priority: str
    created: float
    next_try: float
    attempts: int
    dead_at: float | None
    last_code: int | None
    last_error: str | None
    hint: str | None


@dataclass(frozen=True)
class OutboxStatus:
    """What ``Outbox.status()`` reports (``postbud outbox status``).

    Attributes:
        spool: The spool file, or None when the queue is in memory.
        account: The sending account.
        queued, dead: Messages waiting, and dead letters.
        oldest: Creation time of the oldest queued message (Unix time) or None.
        next_try: When the next one may be tried, or None.
        quota_used, daily_limit: Recipients in the last 24 h, and the limit.
        held_until: End of a hold after Gmail's daily-limit reply, or None.
        damaged: Damaged spools moved aside beside this one (``salvage.py``).
    """

    spool: str | None
    account: str
    queued: int
    dead: int
    oldest: float | None
    next_try: float | None
    quota_used: int
    daily_limit: int
    held_until: float | None
    damaged: tuple[str, ...] = ()


def status(
    settings: Settings, spool: DiskSpool | None, in_memory: int, ledger: Ledger
) -> OutboxStatus:
    """The status of an account's outbox: its spool, what memory holds, the quota."""
    now = time.time()
    queued = dead = 0
    oldest = next_try = None
    if spool is not None:
        queued, dead = spool.counts()
        waiting = rows(spool, "queued")
        oldest = waiting[0].created if waiting else None
        next_try = spool.next_due() if waiting else None
    return OutboxStatus(
        spool=spool.path if spool is not None else None,
        account=settings.username,
        queued=queued + in_memory,
        dead=dead,
        oldest=oldest,
        next_try=next_try,
        quota_used=ledger.used(now)[0],
        daily_limit=settings.daily_limit,
        held_until=ledger.held_until(now),
        damaged=tuple(damaged_copies(settings.spool)) if settings.spool else (),
    )


def rows(spool: DiskSpool, state: str | None = None) -> list[OutboxRow]:
    """The account's rows (oldest first), all or those in ``state``."""
    found = spool.database.read(
        "SELECT id, state, message_id, recipients, priority, created, next_try, attempts,"
        " dead_at, last_code, last_error, hint, substr(data, 1, 4096) FROM outbox"
        " WHERE account = ? AND (? IS NULL OR state = ?) ORDER BY id",
        spool.account,
        state,
        state,
    )
    result = []
    for row in found:
        key, st, mid, rcpts, prio, created, due, attempts, dead_at, code, error, hint, head = row
        result.append(
            OutboxRow(
                id=int(str(key)),
                state=str(st),
                message_id=str(mid),
                subject=_subject_of(bytes(head) if isinstance(head, bytes) else b""),
                recipients=tuple(json.loads(str(rcpts))),
                priority="alert" if int(str(prio)) == 0 else "normal",
                created=float(str(created)),
                next_try=float(str(due)),
                attempts=int(str(attempts)),
                dead_at=None if dead_at is None else float(str(dead_at)),
                last_code=None if code is None else int(str(code)),
                last_error=None if error is None else str(error),
                hint=None if hint is None else str(hint),
            )
        )
    return result


def revive(spool: DiskSpool, ids: list[int] | None, now: float) -> int:
    """Put dead letters (all, or those ``ids``) back in the queue, due now.

    Their age starts again (``created``), or a letter older than ``max_age`` (the
    usual result of an outage) would die again after one try.
    """
    with spool.database.transaction(wait=1.0) as db:
        cursor = db.execute(
            "UPDATE outbox SET state = 'queued', next_try = ?, created = ?, attempts = 0,"
            " dead_at = NULL,"
            " lease_until = 0, lease_owner = NULL WHERE account = ? AND state = 'dead'"
            " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
            (now, now, spool.account, None if ids is None else 1, json.dumps(ids or [])),
        )
        return cursor.rowcount


def forget_dead(spool: DiskSpool, ids: list[int] | None) -> int:
    """Delete dead letters (all, or those ``ids``)."""
    with spool.database.transaction(wait=1.0) as db:
        cursor = db.execute(
            "DELETE FROM outbox WHERE account = ? AND state = 'dead'"
            " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
            (spool.account, None if ids is None else 1, json.dumps(ids or [])),
        )
        return cursor.rowcount


def _subject_of(head: bytes) -> str:
    from email.header import decode_header, make_header
    from email.parser import BytesHeaderParser

    value = BytesHeaderParser().parsebytes(head).get("Subject", "")
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except Exception:  # a damaged header: show it as it is
        return str(value)
