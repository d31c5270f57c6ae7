"""The optional app: ``"django_postbud"`` in ``INSTALLED_APPS`` adds system checks and
the ``postbud_check`` and ``postbud_outbox`` management commands.

The backend and the alert handler work without it; the app only adds what Django can
give an installed app alone: checks that run with ``manage.py check`` (and before
``runserver`` and ``migrate``), so a misspelt ``POSTBUD`` key or a missing app password
is found when the site starts rather than when the first password-reset mail fails.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import register

__all__ = ["PostbudConfig"]

#: The tags of every check: Django's own ``mail`` (``manage.py check --tag mail``, as
#: Django 6.1's mail checks) and ``postbud`` (``--tag postbud``: postbud's checks alone).
TAGS = ("mail", "postbud")


class PostbudConfig(AppConfig):
    """django_postbud's app config: registers the system checks once the app registry is
    ready (the checks read settings, so they must not be registered at import time)."""

    name = "django_postbud"
    verbose_name = "postbud"
    default = True

    def ready(self) -> None:
        from . import checks

        register(checks.check_settings, *TAGS)
        # The token file may be a secret mounted when the container runs, not when it
        # is built: only ``check --deploy`` asks whether it is there.
        register(checks.check_deployment, *TAGS, deploy=True)
