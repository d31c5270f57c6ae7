"""Fixtures of the Django test project: a site configured for FakeGmail, the legacy way
(``EMAIL_*`` + ``POSTBUD``) or the Django 6.1 way (``MAILERS``), and a clean registry.

Django's test environment (pytest-django too) swaps in the locmem backend; the site
fixtures put ``django_postbud.EmailBackend`` back, so mail really goes to FakeGmail over
TLS. Run with ``--ds=djangoproject.settings_legacy`` or ``--ds=djangoproject.settings_mailers``
(one pytest invocation each); tests of the other way skip themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from pytest_django import Settings as SettingsWrapper

from django_postbud import _registry
from postbud.testing import FakeGmail

BACKEND = "django_postbud.EmailBackend"


def pytest_configure(config: pytest.Config) -> None:
    # Django 6.1 deprecates the EMAIL_* settings (RemovedInDjango2028Warning, a
    # PendingDeprecationWarning): setting or reading one warns. The legacy project uses
    # them on purpose, and so does the backend it tests. Only that message is ignored.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:The EMAIL_\w+ setting is deprecated:PendingDeprecationWarning",
    )


def has_mailers() -> bool:
    """Whether this run's site is the MAILERS project (Django 6.1+)."""
    return django.VERSION >= (6, 1) and hasattr(django_settings, "MAILERS")


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Every test starts and ends without Mailers (no connection, worker or spool handle
    left from another test)."""
    _registry.close_all()
    yield
    _registry.close_all()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """The spool the site's POSTBUD points at."""
    return tmp_path / "outbox.sqlite"


@pytest.fixture
def legacy_site(settings: SettingsWrapper, fake_gmail: FakeGmail, spool: Path) -> FakeGmail:
    """The pre-6.1 site: Django's SMTP settings for FakeGmail (as a site that sends through
    Gmail with Django's SMTP backend has them), POSTBUD for the CA and the spool."""
    if has_mailers():
        pytest.skip("the legacy EMAIL_* project (run with --ds=djangoproject.settings_legacy)")
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST_USER = fake_gmail.username
    settings.EMAIL_HOST_PASSWORD = fake_gmail.app_password
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = fake_gmail.port
    settings.EMAIL_USE_SSL = True
    settings.POSTBUD = {"CA_FILE": fake_gmail.ca_file, "SPOOL": str(spool), "EXIT_TIMEOUT": 2}
    return fake_gmail


def mailer_options(fake: FakeGmail, **overrides: Any) -> dict[str, Any]:
    """OPTIONS of a MAILERS alias for ``fake``, in Django's SMTP names where they exist
    (tests get it as the ``options_for`` fixture)."""
    options: dict[str, Any] = {
        "username": fake.username,
        "password": fake.app_password,
        "host": "127.0.0.1",
        "port": fake.port,
        "use_ssl": fake.mode == "ssl",
        "use_tls": fake.mode == "starttls",
        "ca_file": fake.ca_file,
    }
    options.update(overrides)
    return options


@pytest.fixture
def options_for() -> Callable[..., dict[str, Any]]:
    """``options_for(fake, **overrides)``: OPTIONS of a MAILERS alias for a FakeGmail."""
    return mailer_options


@pytest.fixture
def mailers_site(settings: SettingsWrapper, fake_gmail: FakeGmail, spool: Path) -> FakeGmail:
    """The Django 6.1 site: MAILERS["default"] with OPTIONS for FakeGmail; POSTBUD holds
    only what the process shares (the spool)."""
    if not has_mailers():
        pytest.skip("the MAILERS project (Django 6.1, --ds=djangoproject.settings_mailers)")
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": mailer_options(fake_gmail)}}
    settings.POSTBUD = {"SPOOL": str(spool), "EXIT_TIMEOUT": 2}
    return fake_gmail
