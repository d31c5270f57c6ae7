"""``manage.py postbud_check``: ``postbud check`` with the site's settings.

The same walk (``postbud.diagnose``: settings, DNS, TCP, the TLS certificate, EHLO, the
login, the quota), printed the way ``postbud check`` prints it, with the settings the
backend would use (``settings.POSTBUD``, ``MAILERS`` OPTIONS, the ``EMAIL_*`` settings,
the ``POSTBUD_*`` environment). Nothing is sent unless ``--send TO``; queued mail is not
touched. Exit status: 0 all passed, 1 a delivery problem (the fix is the error), 2 a
configuration mistake, as ``postbud check``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import postbud
from django_postbud._settings import settings_for
from django_postbud.management._site import add_using, mailer_alias

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Check the site's postbud settings step by step, as 'postbud check' does: "
        "settings, DNS, TCP, the TLS certificate, EHLO, the login and the daily quota. "
        "Each failure says how to fix it. Queued mail is not touched."
    )
    # Its own diagnosis starts with the settings: the system checks must not stop it
    # before it can say more than they do.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--send", metavar="TO", help="also send a test message to TO")
        parser.add_argument(
            "--debug",
            action="store_true",
            help="print the traceback of a failed step (on stderr)",
        )
        add_using(parser)

    def handle(
        self, *args: Any, send: str | None = None, debug: bool = False, **options: Any
    ) -> None:
        alias = mailer_alias(options.get("using"))
        report = postbud.diagnose(
            lambda: settings_for(alias), send, on_step=self._printer(bool(debug))
        )
        if not report.ok:
            failed = report.failure or report.steps[-1]
            raise CommandError(failed.fix or failed.text, returncode=report.exit_code)
        self.stdout.write(self.style.SUCCESS("All checks passed."))

    def _printer(self, debug: bool) -> Callable[[postbud.CheckStep], None]:
        def show(step: postbud.CheckStep) -> None:
            status = "FAIL" if not step.ok else "warn" if step.warning else "ok"
            style = (
                self.style.ERROR
                if not step.ok
                else self.style.WARNING
                if step.warning
                else (lambda text: text)
            )
            self.stdout.write(style(f"{status:<4} {step.name:<9} {step.text}"))
            if step.fix:
                self.stdout.write(f"{'':<4} {'':<9} fix: {step.fix}")
            if debug and step.error is not None:
                self.stderr.write("".join(traceback.format_exception(step.error)), ending="")

        return show
