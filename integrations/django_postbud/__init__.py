"""django_postbud: postbud for Django 5.2, 6.0 and 6.1.

- ``EMAIL_BACKEND = "django_postbud.EmailBackend"`` (or as a ``MAILERS`` backend);
- ``django_postbud.AdminAlertHandler`` in ``LOGGING``: a drop-in for Django's
  ``AdminEmailHandler`` with postbud's storm control;
- ``"django_postbud"`` in ``INSTALLED_APPS`` (optional): system checks and the
  ``postbud_check`` and ``postbud_outbox`` management commands.

Importing it without Django installed fails with the pip command that fixes it.
"""

from __future__ import annotations

try:
    import django as _django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from postbud.errors import MissingDependencyError

    raise MissingDependencyError(
        "django_postbud needs Django: pip install 'postbud[django]'", package="django"
    ) from exc

from ._alerts import AdminAlertHandler
from ._backend import EmailBackend

__all__ = ["AdminAlertHandler", "EmailBackend"]
