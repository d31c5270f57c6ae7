"""A site configured the pre-6.1 way: EMAIL_BACKEND and the EMAIL_* settings (the
fixtures set EMAIL_HOST_USER/EMAIL_HOST_PASSWORD or POSTBUD for FakeGmail)."""

from __future__ import annotations

import warnings

from djangoproject.settings_common import *  # noqa: F403

# Django 6.1 deprecates the EMAIL_* settings (RemovedInDjango2028Warning, a
# PendingDeprecationWarning) and warns when a site sets or reads them; this project is
# the pre-MAILERS way on purpose. Targeted at that one message, and here because Django
# warns while it loads this module, before any conftest runs (the tests' own reads are
# covered by the same filter in tests/integrations/django/conftest.py).
warnings.filterwarnings(
    "ignore", message=r"The EMAIL_\w+ setting is deprecated", category=PendingDeprecationWarning
)

EMAIL_BACKEND = "django_postbud.EmailBackend"
