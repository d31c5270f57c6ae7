"""``postbud outbox status|list|retry|purge``: what waits in the spool, and dead letters.

``status`` and ``list`` only read: they send nothing, touch no row and create no file
(a spool that does not exist yet is shown empty, not made), so they work without
credentials and are safe in a monitoring script. ``purge`` deletes dead letters only.
``retry`` puts dead letters back in the queue and sends them, with whatever else waits.
An id that is not in the spool is a mistake the user must see (exit 1), and nothing is
done then: a typo must not purge or resend the wrong letters. Everything goes through
the outbox's own API (``Mailer.outbox``).
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
from datetime import datetime, timezone

from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._outbox import DAMAGED_LEFT, Outbox, OutboxRow, OutboxStatus, is_damage
from postbud.errors import ConfigurationError

from ._common import (
    EXIT_DELIVERY,
    EXIT_OK,
    EXIT_TEMPFAIL,
    OUTBOX_ACTIONS,
    Usage,
    deliver_left,
    one_line,
    say,
    settings_from,
    settings_from_with,
)

__all__ = ["outbox_command", "run_outbox"]


def when(at: object) -> str:
    """A spool timestamp as UTC text."""
    if not isinstance(at, (int, float)):
        return "-"
    return datetime.fromtimestamp(float(at), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class _NoLogin:
    """Credentials for reading the spool only (``outbox status`` without a password)."""

    credential = "no credentials"

    def login(self, smtp: object, username: str) -> None:  # pragma: no cover - never sends
        raise ConfigurationError("postbud outbox has no credentials to send with.")


def _reading_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``status``, ``list`` and ``purge``: no credentials needed."""
    try:
        return settings_from(args)
    except ConfigurationError as missing:
        try:
            return settings_from_with(args, auth=_NoLogin())
        except ConfigurationError:
            raise missing from None


def _no_spool() -> Usage:
    return Usage(
        "there is no spool (POSTBUD_SPOOL is empty, or the file cannot be used): "
        "nothing is kept between runs."
    )


def outbox_command(args: argparse.Namespace) -> int:
    """Run ``postbud outbox ACTION``; returns the exit status."""
    action: str = args.action
    ids: list[int] | None = args.ids or None
    if ids is not None and action in ("status", "list"):
        raise Usage(f"outbox {action} takes no IDs (they are for retry and purge).")
    settings = settings_from(args) if action == "retry" else _reading_settings(args)
    return run_outbox(action, ids, settings)


def run_outbox(action: str, ids: list[int] | None, settings: Settings) -> int:
    """``postbud outbox ACTION [ID...]`` with these settings (``postbud.cli.outbox``)."""
    if action not in OUTBOX_ACTIONS:
        raise Usage(f"unknown outbox action {action!r}: use one of {', '.join(OUTBOX_ACTIONS)}.")
    if ids is not None and action in ("status", "list"):
        raise Usage(f"outbox {action} takes no IDs (they are for retry and purge).")
    if settings.spool is None:
        raise _no_spool()
    if not os.path.exists(settings.spool):
        return _without_spool(action, settings, ids)  # and it stays that way
    outbox = Outbox.open(settings)  # reads and trims only: no transport, no worker
    try:
        if not outbox.shared:
            raise _no_spool()
        if ids is not None and not _known(outbox, ids, action):
            return EXIT_DELIVERY
        if action == "status":
            _status(outbox.status(), outbox)
        elif action == "list":
            _list(outbox.rows(), settings)
        elif action == "purge":
            print(f"{outbox.purge(ids)} dead letter(s) deleted.")
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        say(DAMAGED_LEFT % (settings.spool, exc))  # never repaired by a command that reads
        return EXIT_DELIVERY
    finally:
        outbox.close(0)
    return _retry(settings, ids) if action == "retry" else EXIT_OK


def _without_spool(action: str, settings: Settings, ids: list[int] | None) -> int:
    """What each action says about a spool file that does not exist (yet)."""
    if ids is not None:
        for key in ids:
            say(_missing(key))
        return EXIT_DELIVERY
    if action == "status":
        empty = OutboxStatus(
            spool=f"{settings.spool} (no file yet: nothing was ever kept)",
            account=settings.username,
            queued=0,
            dead=0,
            oldest=None,
            next_try=None,
            quota_used=0,
            daily_limit=settings.daily_limit,
            held_until=None,
        )
        _status(empty, None)
    elif action == "list":
        _list([], settings)
    elif action == "purge":
        print("0 dead letter(s) deleted.")
    else:
        print("0 dead letter(s) back in the queue.")
    return EXIT_OK


def _missing(key: int) -> str:
    return f"no message {key} in the spool (postbud outbox list shows the ids)"


def _known(outbox: Outbox, ids: list[int], action: str) -> bool:
    """Whether every id is one this action can take; says why not for each other one."""
    states = {row.id: row.state for row in outbox.rows()}
    ok = True
    for key in dict.fromkeys(ids):
        if key not in states:
            say(_missing(key))
            ok = False
        elif action == "purge" and states[key] != "dead":
            say(
                f"message {key} is {states[key]}, not a dead letter: purge deletes dead "
                "letters only"
            )
            ok = False
    return ok


def _status(status: OutboxStatus, outbox: Outbox | None) -> None:
    print(f"spool:      {status.spool}")
    print(f"account:    {status.account}")
    print(f"queued:     {status.queued}")
    print(f"oldest:     {when(status.oldest)}")
    print(f"next retry: {when(status.next_try)}")
    print(f"dead:       {status.dead}")
    print(f"quota:      {status.quota_used} of {status.daily_limit} recipients in 24 h")
    if status.held_until is not None:
        print(f"held until: {when(status.held_until)} (Gmail's daily limit)")
    waits = outbox.waits() if outbox is not None else None
    if outbox is not None and waits is not None:
        print(f"waiting:    {outbox.gates.describe(waits[1])}")
    for copy in status.damaged:
        print(
            f"damaged:   {copy} (a damaged spool moved aside; what it held that could be "
            "read was saved. Look at it with sqlite3, then delete it)"
        )


def _attempts(row: OutboxRow) -> str:
    # A row with a server's reply was tried at least once, even where the spool has not
    # counted the attempt that failed for good.
    count = max(row.attempts, 1) if row.last_code is not None else row.attempts
    return f"{count} attempt" + ("" if count == 1 else "s")


def reason(row: OutboxRow) -> str:
    """The last error of ``row`` on one line, its reply code once."""
    text = one_line(row.last_error or "")
    code = row.last_code
    if code is not None and not re.search(rf"(?<!\d){code}(?!\d)", text):
        text = f"{code} {text}".strip()
    return text or "no reason recorded"


def _list(rows: list[OutboxRow], settings: Settings) -> None:
    if not rows:
        print(f"The spool has no mail of {settings.username}: nothing queued, no dead letters.")
        return
    for row in rows:
        recipients = ", ".join(row.recipients)
        print(f"{row.id:>6}  {row.state:<6}  {when(row.created)}  to {recipients}  {row.subject!r}")
        if row.state == "dead":
            print(f"        dead since {when(row.dead_at)}, after {_attempts(row)}: {reason(row)}")
            if row.hint:
                print(f"        hint: {one_line(row.hint)}")
        else:
            line = f"        next try {when(row.next_try)}"
            if row.attempts:
                line += f", after {_attempts(row)}"
            print(line + (f"; last: {reason(row)}" if row.last_error else ""))


def _retry(settings: Settings, ids: list[int] | None) -> int:
    mailer = Mailer(settings)
    try:
        # The user fixed something: the pauses end, and what waits goes first.
        deliver_left(mailer, clear_pauses=True)
        outbox = mailer.outbox
        wanted = {r.id for r in outbox.rows("dead")}
        revived = wanted if ids is None else wanted & set(ids)
        count = outbox.revive(ids)
        print(f"{count} dead letter(s) back in the queue.")
        if not count:
            return EXIT_OK
        outbox.flush(settings.exit_timeout)
        after = [r for r in outbox.rows() if r.id in revived]
        failed = [r for r in after if r.state == "dead"]
        for row in failed:
            say(f"{row.id} failed again: {reason(row)}")
        if failed:
            return EXIT_DELIVERY
        if after:
            say(f"{len(after)} message(s) still wait for a retry.")
            return EXIT_TEMPFAIL
        return EXIT_OK
    finally:
        # Run in process too (postbud.cli.outbox: manage.py, flask postbud): the worker
        # is stopped and joined (up to 1 s), not left running in the caller's process.
        mailer.close(timeout=1.0)
