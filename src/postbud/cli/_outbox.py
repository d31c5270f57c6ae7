"""``postbud outbox status|list|retry|purge``: what waits in the spool, and dead letters.

``status``, ``list`` and ``purge`` only read or trim the spool, so they work without
credentials (with them, ``status`` and ``list`` first deliver what waits, like every
command); ``retry`` puts dead letters back in the queue and sends them.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

from postbud._config import Settings
from postbud._mailer import Mailer, open_spool
from postbud._outbox.ledger import Ledger
from postbud._outbox.spool import DiskSpool
from postbud.errors import ConfigurationError

from . import (
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


class _SpoolOnly:
    """What ``outbox status``, ``list`` and ``purge`` need: settings, spool and ledger.

    Built without a Mailer, so reading the spool needs no credentials and starts no
    worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._spool = open_spool(settings)
        self._ledger = Ledger(settings, self._spool)

    def close(self, timeout: float = 0.0) -> None:
        if self._spool is not None:
            self._spool.close()


def _outbox_mailer(args: argparse.Namespace) -> Mailer | _SpoolOnly:
    if args.action == "retry":
        return mailer_from(args)
    try:  # status and list deliver what waits first, when they can; purge never sends
        return mailer_from(args) if args.action != "purge" else _SpoolOnly(settings_from(args))
    except ConfigurationError as missing:  # no credentials: reading the spool still works
        try:
            return _SpoolOnly(settings_from_with(args, auth=_NoLogin()))
        except ConfigurationError:
            raise missing from None


def outbox_command(args: argparse.Namespace) -> int:
    """Run ``postbud outbox ACTION``; returns the exit status."""
    mailer = _outbox_mailer(args)
    try:
        spool = mailer._spool
        if spool is None:
            raise Usage(
                "there is no spool (POSTBUD_SPOOL is empty, or the file cannot be used): "
                "nothing is kept between runs."
            )
        ids = args.ids or None
        if args.action == "status":
            _status(mailer, spool)
        elif args.action == "list":
            _list(spool)
        elif args.action == "retry":
            assert isinstance(mailer, Mailer)
            return _retry(mailer, spool, ids)
        else:
            print(f"{spool.forget_dead(ids)} dead letter(s) deleted.")
        return EXIT_OK
    finally:
        mailer.close(timeout=0)


def _status(mailer: Mailer | _SpoolOnly, spool: DiskSpool) -> None:
    now = time.time()
    queued, dead = spool.counts()
    rows = spool.rows("queued")
    used, _, _ = mailer._ledger.used(now)
    held = mailer._ledger.held_until(now)
    print(f"spool:      {spool.path}")
    print(f"account:    {mailer.settings.username}")
    print(f"queued:     {queued}")
    print(f"oldest:     {when(rows[0]['created']) if rows else '-'}")
    print(f"next retry: {when(spool.next_due()) if rows else '-'}")
    print(f"dead:       {dead}")
    print(f"quota:      {used} of {mailer.settings.daily_limit} recipients in 24 h")
    if held is not None:
        print(f"held until: {when(held)} (Gmail's daily limit)")


def _list(spool: DiskSpool) -> None:
    for row in spool.rows():
        recipients = ", ".join(str(r) for r in row["recipients"])  # type: ignore[attr-defined]
        print(
            f"{row['id']:>6}  {row['state']:<6}  {when(row['created'])}  "
            f"tries {row['attempts']}  to {recipients}  {row['subject']!r}"
        )
        if row["state"] == "dead":
            print(f"        dead since {when(row['dead_at'])}: {row['last_error']}")
            if row["hint"]:
                print(f"        hint: {row['hint']}")
        elif row["last_error"]:
            print(f"        next try {when(row['next_try'])}; last: {row['last_error']}")


def _retry(mailer: Mailer, spool: DiskSpool, ids: list[int] | None) -> int:
    wanted = {int(str(r["id"])) for r in spool.rows("dead")}
    revived = wanted if ids is None else wanted & set(ids)
    count = spool.revive(ids, time.time())
    print(f"{count} dead letter(s) back in the queue.")
    if not count:
        return EXIT_OK
    mailer._outbox.start()
    mailer.flush(mailer.settings.exit_timeout)
    after = [r for r in spool.rows() if int(str(r["id"])) in revived]
    failed = [r for r in after if r["state"] == "dead"]
    for row in failed:
        say(f"{row['id']} failed again: {row['last_code']} {row['last_error']}")
    if failed:
        return EXIT_DELIVERY
    if after:
        say(f"{len(after)} message(s) still wait for a retry.")
        return EXIT_TEMPFAIL
    return EXIT_OK
