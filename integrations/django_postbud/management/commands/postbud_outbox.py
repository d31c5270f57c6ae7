"""``manage.py postbud_outbox status|list|retry|purge [ID...]``: ``postbud outbox`` with
the site's settings.

It runs ``postbud outbox`` in this process (``postbud.cli.outbox``) with the site's
resolved settings, so the output, the exit status and the rules are the command line's,
exactly: ``status`` and ``list`` only read (they send nothing, touch no row and create no
file), ``purge`` deletes dead letters only, ``retry`` puts dead letters back in the queue
and sends them with what waits, and an id that is not in the spool exits 1 with nothing
done.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import postbud
import postbud.cli
from django_postbud._settings import settings_for
from django_postbud.management._site import EXIT_CONFIG, add_using, mailer_alias

__all__ = ["Command"]

_ACTIONS = ("status", "list", "retry", "purge")


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
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = postbud.cli.outbox(action, ids, settings=settings)
        self.stdout.write(out.getvalue(), ending="")
        said = err.getvalue().rstrip("\n")
        if status:
            # Django prints "CommandError: " first: postbud's own "postbud: " goes.
            lines = [line.removeprefix("postbud: ") for line in said.splitlines()]
            raise CommandError(
                "\n".join(lines) or f"postbud outbox {action} exited with {status}.",
                returncode=status,
            )
        if said:
            self.stderr.write(said)
