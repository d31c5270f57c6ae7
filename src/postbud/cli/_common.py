"""What every command shares: exit codes, one-line messages, settings and the Mailer."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from postbud._config import Settings
from postbud._mailer import Mailer

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DELIVERY",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "OPTION_SETTINGS",
    "Usage",
    "mailer_from",
    "say",
    "settings_from",
    "settings_from_with",
]

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_CONFIG = 2
EXIT_TEMPFAIL = 75

#: Settings an option may set (``--ca-file``); secrets come from the environment only.
OPTION_SETTINGS = (
    "username",
    "sender",
    "host",
    "port",
    "security",
    "timeout",
    "ca_file",
    "spool",
    "oauth_token_file",
    "oauth_token_uri",
    "oauth_client_id",
    "service_account_file",
    "daily_limit",
    "exit_timeout",
    "max_age",
    "alert_tag",
)


def say(message: str) -> None:
    """One line for the user, on stderr (stdout is for results)."""
    print(f"postbud: {message}", file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace) -> Settings:
    """``Settings`` from ``POSTBUD_*``, with the options given on the command line."""
    return settings_from_with(args)


def settings_from_with(args: argparse.Namespace, **extra: Any) -> Settings:
    given = {
        name: getattr(args, f"set_{name}")
        for name in OPTION_SETTINGS
        if getattr(args, f"set_{name}", None) is not None
    }
    return Settings.from_env(**given, **extra)


def mailer_from(
    args: argparse.Namespace, *, drain: bool = True, clear_pauses: bool = False
) -> Mailer:
    """The Mailer for a command; first retries what an earlier run left in the spool
    (behind the daily-limit hold, the login pause and the connection backoff, unless
    ``clear_pauses``: ``postbud outbox retry``, the user fixed something)."""
    settings = settings_from(args)
    mailer = Mailer(settings)
    if drain:
        before = mailer.stats()
        pending = mailer.outbox.retry_pending(clear_pauses=clear_pauses)
        if pending:
            mailer.flush(settings.exit_timeout)
            after = mailer.stats()
            sent = after["sent"] - before["sent"]  # what Gmail accepted, nothing else
            dead = after["dead"] - before["dead"]
            left = mailer.outbox.queued()
            line = f"{sent} of {pending} message(s) left in the spool by an earlier run went out"
            if dead:
                line += f"; {dead} failed for good (see 'postbud outbox list')"
            if left:
                line += f"; {left} still wait"
                waits = mailer.outbox.waits()
                line += f" ({mailer.outbox.gates.describe(waits[1])})" if waits else " for a retry"
            say(line + ".")
    return mailer


class Usage(Exception):
    """A usage mistake: one line, exit 2."""
