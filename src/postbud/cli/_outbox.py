"""``postbud outbox status|list|retry|purge``: what waits in the spool, and dead letters.

``status``, ``list`` and ``purge`` only read or trim the spool, so they work without
credentials (with them, ``status`` and ``list`` first deliver what waits, like every
command); ``retry`` puts dead letters back in the queue and sends them. Everything
goes through the outbox's own API (``Mailer.outbox``).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._outbox import Outbox
from postbud.errors import ConfigurationError

from ._common import (
    EXIT_DELIVERY,
    EXIT_OK,
    EXIT_TEMPFAIL,
    Usage,
    mailer_from,
    say,
    settings_from,
    settings_from_with,
)

__all__ = ["outbox_command"]


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


def _read_only(settings: Settings) -> Outbox:
    """The account's outbox for reading the spool: no credentials needed, no worker."""
    return Outbox.open(settings)


def _outbox_of(args: argparse.Namespace) -> tuple[Outbox, Mailer | None]:
    if args.action == "retry":  # the user fixed something: the pauses end, rows go now
        mailer = mailer_from(args, clear_pauses=True)
        return mailer.outbox, mailer
    # status, list and purge never touch queued mail (and need no credentials).
    try:
        return _read_only(settings_from(args)), None
    except ConfigurationError as missing:
        try:
            return _read_only(settings_from_with(args, auth=_NoLogin())), None
        except ConfigurationError:
            raise missing from None


def outbox_command(args: argparse.Namespace) -> int:
    """Run ``postbud outbox ACTION``; returns the exit status."""
    outbox, mailer = _outbox_of(args)
    try:
        if not outbox.shared:
            raise Usage(
                "there is no spool (POSTBUD_SPOOL is empty, or the file cannot be used): "
                "nothing is kept between runs."
            )
        ids = args.ids or None
        if args.action == "status":
            _status(outbox)
        elif args.action == "list":
            _list(outbox)
        elif args.action == "retry":
            return _retry(outbox, ids)
        else:
            print(f"{outbox.purge(ids)} dead letter(s) deleted.")
        return EXIT_OK
    finally:
        if mailer is not None:
            mailer.close(timeout=0)
        else:
            outbox.close(0)


def _status(outbox: Outbox) -> None:
    status = outbox.status()
    print(f"spool:      {status.spool}")
    print(f"account:    {status.account}")
    print(f"queued:     {status.queued}")
    print(f"oldest:     {when(status.oldest)}")
    print(f"next retry: {when(status.next_try)}")
    print(f"dead:       {status.dead}")
    print(f"quota:      {status.quota_used} of {status.daily_limit} recipients in 24 h")
    if status.held_until is not None:
        print(f"held until: {when(status.held_until)} (Gmail's daily limit)")
    waits = outbox.waits()
    if waits is not None:
        print(f"waiting:    {outbox.gates.describe(waits[1])}")
    for copy in status.damaged:
        print(
            f"damaged:   {copy} (a damaged spool moved aside; what it held that could be "
            "read was saved. Look at it with sqlite3, then delete it)"
        )


def _list(outbox: Outbox) -> None:
    for row in outbox.rows():
        recipients = ", ".join(row.recipients)
        print(
            f"{row.id:>6}  {row.state:<6}  {when(row.created)}  "
            f"tries {row.attempts}  to {recipients}  {row.subject!r}"
        )
        if row.state == "dead":
            print(f"        dead since {when(row.dead_at)}: {row.last_error}")
            if row.hint:
                print(f"        hint: {row.hint}")
        elif row.last_error:
            print(f"        next try {when(row.next_try)}; last: {row.last_error}")


def _retry(outbox: Outbox, ids: list[int] | None) -> int:
    wanted = {r.id for r in outbox.rows("dead")}
    revived = wanted if ids is None else wanted & set(ids)
    count = outbox.revive(ids)
    print(f"{count} dead letter(s) back in the queue.")
    if not count:
        return EXIT_OK
    outbox.flush(outbox.settings.exit_timeout)
    after = [r for r in outbox.rows() if r.id in revived]
    failed = [r for r in after if r.state == "dead"]
    for row in failed:
        say(f"{row.id} failed again: {row.last_code} {row.last_error}")
    if failed:
        return EXIT_DELIVERY
    if after:
        say(f"{len(after)} message(s) still wait for a retry.")
        return EXIT_TEMPFAIL
    return EXIT_OK
