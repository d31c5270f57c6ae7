"""``manage.py postbud_outbox status|list|retry|purge [ID...]``: ``postbud outbox`` with
the site's settings.

It runs ``postbud outbox`` itself (``python -m postbud``) with the site's resolved
settings in ``POSTBUD_*`` variables, so the output, the exit status and the rules are the
command line's, exactly: ``status`` and ``list`` only read (they send nothing, touch no
row and create no file), ``purge`` deletes dead letters only, ``retry`` puts dead letters
back in the queue and sends them with what waits, and an id that is not in the spool
exits 1 with nothing done. (postbud's public API opens an account's outbox only with a
Mailer, whose worker would deliver what waits: not what ``status`` may do.) ``status``,
``list`` and ``purge`` get no secret; ``retry`` gets the credentials it sends with,
in its environment, as ``postbud`` takes them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import postbud
from django_postbud._settings import CREDENTIALS, settings_for
from django_postbud.management._site import EXIT_CONFIG, add_using, mailer_alias

__all__ = ["Command"]

_ACTIONS = ("status", "list", "retry", "purge")
# Who logs in: given to ``retry`` only (``status``, ``list`` and ``purge`` read or delete
# rows of the account, which ``username`` names).
_CREDENTIALS = CREDENTIALS - {"username"}


class Command(BaseCommand):
    help = (
        "Show or manage the site's postbud spool, as 'postbud outbox' does. status: "
        "counts, oldest message, next retry, quota used. list: every message with its "
        "attempts and last error. status and list only read: they send nothing and create "
        "no file. retry: put dead letters (all, or the IDs given) back in the queue and "
        "send them with what waits. purge: delete dead letters (all, or the IDs given)."
    )
    # status must work on a site whose settings a system check refuses.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=_ACTIONS, help="what to do")
        parser.add_argument(
            "ids",
            nargs="*",
            type=int,
            metavar="ID",
            help="message ids, as 'postbud_outbox list' shows them (retry and purge only)",
        )
        add_using(parser)

    def handle(self, *args: Any, action: str, ids: list[int], **options: Any) -> None:
        alias = mailer_alias(options.get("using"))
        try:
            settings = settings_for(alias)
        except postbud.ConfigurationError as exc:
            raise CommandError(str(exc), returncode=EXIT_CONFIG) from None
        done = subprocess.run(  # noqa: S603 - this Python, postbud's own command line
            [sys.executable, "-m", "postbud", "outbox", action, *map(str, ids)],
            env=_environment(settings, with_credentials=action == "retry"),
            capture_output=True,
            text=True,
            check=False,
        )
        self.stdout.write(done.stdout, ending="")
        said = done.stderr.rstrip("\n")
        if done.returncode:
            # Django prints "CommandError: " first: postbud's own "postbud: " goes.
            lines = [line.removeprefix("postbud: ") for line in said.splitlines()]
            raise CommandError(
                "\n".join(lines) or f"postbud outbox {action} exited with {done.returncode}.",
                returncode=done.returncode,
            )
        if said:
            self.stderr.write(said)


def _environment(settings: postbud.Settings, *, with_credentials: bool) -> dict[str, str]:
    """This process's environment with ``settings`` as the only ``POSTBUD_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("POSTBUD_")}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name in _CREDENTIALS and not with_credentials:
            continue
        if field.name == "auth" and value is not None:
            raise CommandError(
                "postbud_outbox retry cannot hand a credentials object (the 'auth' setting) "
                "to postbud outbox: give the mailer an app password or an OAuth2 token file.",
                returncode=EXIT_CONFIG,
            )
        if field.name == "spool" and value is None:
            env["POSTBUD_SPOOL"] = ""  # memory: postbud outbox says there is no spool
        elif value is not None:
            text = value.reveal() if isinstance(value, postbud.Secret) else str(value)
            env["POSTBUD_" + field.name.upper()] = text
    return env
