"""What both commands share: which of the site's mailers they work on (``--using``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django
from django.conf import settings as django_settings
from django.core.management.base import CommandError

from django_postbud._settings import mailers_defined
from django_postbud.checks import is_postbud

__all__ = ["EXIT_CONFIG", "add_using", "mailer_alias"]

#: postbud's exit status for a usage or configuration mistake (DESIGN.md's table).
EXIT_CONFIG = 2


def add_using(parser: Any) -> None:
    """``--using ALIAS`` on Django 6.1 and later (``MAILERS``), as ``sendtestemail`` has."""
    if django.VERSION >= (6, 1):
        parser.add_argument(
            "--using",
            metavar="ALIAS",
            help="the MAILERS alias (default: 'default')",
        )


def mailer_alias(using: str | None) -> str | None:
    """The alias the settings lookup takes for ``--using`` (None: the site without
    ``MAILERS``). A ``MAILERS`` alias whose backend is another one is refused: its
    OPTIONS are that backend's, not postbud's. Without ``MAILERS``, ``EMAIL_BACKEND`` may
    still be Django's: the commands then check the settings the switch would use."""
    if not mailers_defined():
        return using  # the lookup says what is wrong with an alias there
    alias = using or "default"
    mailers = django_settings.MAILERS
    config = mailers.get(alias) if isinstance(mailers, Mapping) else None
    if isinstance(config, Mapping):
        backend = config.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
        if not is_postbud(backend):
            raise CommandError(
                f"MAILERS[{alias!r}] sends with {backend}, not django_postbud.EmailBackend: "
                "name a postbud mailer with --using.",
                returncode=EXIT_CONFIG,
            )
    return alias
