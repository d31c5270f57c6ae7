"""docs/django.md works as written (issue 18).

The page shows the files of docs/examples/django/ word for word (tests/docs/test_docs.py
checks that); here each one runs the way a site runs it:

- a settings file's upper-case names become the test site's settings (pytest-django's
  ``settings``), and a FakeGmail that knows the docs' account (``me@gmail.com``)
  intercepts every connection, so settings written for smtp.gmail.com run unchanged;
- the LOGGING file is given to ``logging.config.dictConfig`` after Django's own default
  logging, as ``django.setup()`` does, and the test the page shows runs against it;
- every row of the page's ``| the site has | the error |`` table is produced here and
  compared with the real error text.

The legacy examples run with ``--ds=djangoproject.settings_legacy``, the MAILERS one with
``--ds=djangoproject.settings_mailers`` (Django 6.1); each skips itself in the other run.
"""

from __future__ import annotations

import logging
import logging.config
import re
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import mail
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import Client
from pytest_django import Settings as SettingsWrapper

import postbud
from django_postbud import AdminAlertHandler, EmailBackend
from django_postbud._settings import settings_for
from postbud.testing import FakeGmail

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "django.md"
EXAMPLES = ROOT / "docs" / "examples" / "django"
#: The docs' account (the app password comes from GMAIL_APP_PASSWORD, as in the examples).
ACCOUNT = "me@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"


def has_mailers() -> bool:
    """Whether this run's site is the MAILERS project (Django 6.1+)."""
    return django.VERSION >= (6, 1) and hasattr(django_settings, "MAILERS")


legacy_only = pytest.mark.skipif(
    "has_mailers()", reason="the EMAIL_* example (run with --ds=djangoproject.settings_legacy)"
)
mailers_only = pytest.mark.skipif(
    "not has_mailers()",
    reason="the MAILERS example (Django 6.1, --ds=djangoproject.settings_mailers)",
)


def example(name: str) -> dict[str, Any]:
    """The settings a file of docs/examples/django/ defines (its upper-case names)."""
    found = runpy.run_path(str(EXAMPLES / name))
    return {k: v for k, v in found.items() if k.isupper()}


def apply(settings: SettingsWrapper, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(settings, name, value)


def postbud_check_ids() -> list[str]:
    """What ``manage.py check --deploy`` says about postbud's settings."""
    found = run_checks(include_deployment_checks=True)
    return [str(m.id) for m in found if str(m.id).startswith("postbud.")]


def site_mailer() -> postbud.Mailer:
    """The postbud Mailer the site's default mailer sends with."""
    backend = mail.mailers["default"] if has_mailers() else EmailBackend()
    mailer: postbud.Mailer = backend.mailer
    return mailer


@pytest.fixture(scope="module")
def _docs_gmail() -> Iterator[FakeGmail]:
    with FakeGmail("starttls", username=ACCOUNT, app_password=APP_PASSWORD) as fake:
        yield fake


@pytest.fixture
def docs_gmail(_docs_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGmail]:
    """The docs' FakeGmail, intercepting every postbud connection for this test."""
    monkeypatch.setenv("GMAIL_APP_PASSWORD", APP_PASSWORD)
    _docs_gmail.reset()
    with _docs_gmail.intercept():
        yield _docs_gmail
    _docs_gmail.reset()


@pytest.fixture
def docs_site(settings: SettingsWrapper, docs_gmail: FakeGmail) -> FakeGmail:
    """The test site with the page's mail settings: the one-line switch, or MAILERS."""
    apply(settings, example("settings_mailers.py" if has_mailers() else "settings_switch.py"))
    return docs_gmail


# -- the one-line switch, and MAILERS --------------------------------------------------------


@legacy_only
def test_the_one_line_switch(docs_site: FakeGmail) -> None:
    assert mail.send_mail("Welcome", "Thanks for signing up.", None, ["new@example.com"]) == 1
    [received] = docs_site.messages
    assert received.authenticated_as == ACCOUNT
    assert received["From"] == "My Site <me@gmail.com>"  # DEFAULT_FROM_EMAIL
    assert "STARTTLS" in docs_site.commands
    found = settings_for()
    assert (found.host, found.port, found.security) == ("smtp.gmail.com", 587, "starttls")
    assert found.timeout == 10
    assert postbud_check_ids() == []


@mailers_only
def test_the_mailers_example(docs_site: FakeGmail) -> None:
    docs_site.delay(0.3, "DATA")  # a slow Gmail: the queued alias does not wait for it
    assert mail.send_mail("Now", "Sent in the request.", None, ["a@example.com"]) == 1
    assert [m["Subject"] for m in docs_site.messages] == ["Now"]
    assert mail.send_mail("Later", "Queued.", None, ["a@example.com"], using="queued") == 1
    assert [m["Subject"] for m in docs_site.messages] == ["Now"]
    queued, default = mail.mailers["queued"], mail.mailers["default"]
    assert queued.background and not default.background
    assert queued.mailer is default.mailer  # equal settings: one connection, one outbox
    assert queued.mailer.flush(10)
    assert [m["Subject"] for m in docs_site.messages] == ["Now", "Later"]
    assert docs_site.connections == 1
    found = settings_for("queued")
    assert (found.port, found.security, found.alert_tag, found.max_age) == (
        587,
        "starttls",
        "prod",
        86400,
    )
    assert postbud_check_ids() == []


# -- BACKGROUND and transaction.on_commit ------------------------------------------------------


def sign_up_then_fail(sign_up: Callable[[str], User], email: str) -> None:
    """A larger transaction around the sign-up that rolls back after it."""
    with transaction.atomic():
        sign_up(email)
        raise RuntimeError("the rest of the sign-up failed")


@pytest.mark.django_db(transaction=True)
def test_background_mail_is_queued_only_after_the_commit(
    docs_site: FakeGmail, settings: SettingsWrapper
) -> None:
    sign_up: Callable[[str], User] = runpy.run_path(str(EXAMPLES / "signup.py"))["sign_up"]
    settings.POSTBUD = {**getattr(settings, "POSTBUD", {}), "BACKGROUND": True}
    docs_site.delay(0.3, "DATA")
    mailer = site_mailer()
    assert sign_up("ada@example.com").email == "ada@example.com"
    assert mailer.stats()["submitted"] == 1  # queued at the commit...
    assert docs_site.messages == []  # ...and sent later, by the outbox's worker
    with pytest.raises(RuntimeError):
        sign_up_then_fail(sign_up, "bob@example.com")
    assert not User.objects.filter(email="bob@example.com").exists()
    assert mailer.flush(10)
    assert mailer.stats()["submitted"] == 1  # nothing queued for the rolled-back user
    assert [m.recipients for m in docs_site.messages] == [("ada@example.com",)]


# -- the error alerts ----------------------------------------------------------------------------


def _logger_states() -> dict[str, tuple[Any, ...]]:
    loggers = [("", logging.root), *logging.root.manager.loggerDict.items()]
    states = {}
    for name, logger in loggers:
        if isinstance(logger, logging.Logger):  # not a PlaceHolder
            states[name] = (
                list(logger.handlers),
                logger.level,
                logger.propagate,
                logger.disabled,
                list(logger.filters),
            )
    return states


@pytest.fixture
def configure_logging() -> Iterator[Callable[[dict[str, Any]], None]]:
    """``configure(LOGGING)``: what ``django.setup()`` does with a site's LOGGING (Django's
    default logging is in place already); every logger is restored afterwards."""
    saved = _logger_states()

    def configure(config: dict[str, Any]) -> None:
        logging.config.dictConfig(config)

    yield configure
    made = set()
    for name, (handlers, level, propagate, disabled, filters) in saved.items():
        logger = logging.getLogger(name or None)
        made |= {h for h in logger.handlers if isinstance(h, AdminAlertHandler)}
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled
        logger.filters[:] = filters
    for handler in made:
        handler.close()


def documented_test(name: str) -> Callable[[], None]:
    """The test function ``name`` of a python block of the page."""
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S):
        if f"def {name}(" in block:
            namespace: dict[str, Any] = {"__name__": "docs_django"}
            exec(compile(block, str(PAGE), "exec"), namespace)
            found: Callable[[], None] = namespace[name]
            return found
    raise AssertionError(f"docs/django.md shows no test {name}")


def test_the_logging_example_replaces_djangos_handler(
    configure_logging: Callable[[dict[str, Any]], None],
) -> None:
    configure_logging(example("settings_logging.py")["LOGGING"])
    handlers = logging.getLogger("django").handlers
    assert [type(h).__name__ for h in handlers] == ["StreamHandler", "AdminAlertHandler"]
    [alerts] = [h for h in handlers if isinstance(h, AdminAlertHandler)]
    assert alerts.include_html
    assert alerts.options == {"alert_tag": "prod"}
    documented_test("test_a_broken_page_mails_the_admins_once")()
    first = mail.outbox[0]
    assert first.subject == "[prod] [Django] ERROR (EXTERNAL IP): Internal Server Error: /boom/"
    assert first.alternatives and "<!DOCTYPE html>" in first.alternatives[0][0]
    # Django's runserver log keeps its own handler and format.
    assert [type(h).__name__ for h in logging.getLogger("django.server").handlers] == [
        "StreamHandler"
    ]


def test_a_handler_added_beside_djangos_mails_twice(
    configure_logging: Callable[[dict[str, Any]], None],
) -> None:
    # What the page warns about: Django's default AdminEmailHandler stays on the "django"
    # logger when a site's LOGGING only adds postbud's handler somewhere below it.
    configure_logging(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"alerts": {"class": "django_postbud.AdminAlertHandler"}},
            "loggers": {"django.request": {"handlers": ["alerts"]}},
        }
    )
    assert Client(raise_request_exception=False).get("/boom/").status_code == 500
    [alerts] = logging.getLogger("django.request").handlers
    assert isinstance(alerts, AdminAlertHandler)
    alerts.flush()
    assert sorted("X-Postbud-Alert" in m.extra_headers for m in mail.outbox) == [False, True]


# -- the documented error texts -------------------------------------------------------------------

#: Makes one mistake on the docs' site (and returns what it built, if it did not raise).
Mistake = Callable[[SettingsWrapper, pytest.MonkeyPatch], object]


def _legacy(change: dict[str, Any]) -> Mistake:
    def make(settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch) -> object:
        apply(settings, change)
        return EmailBackend()

    return make


def _options(**change: Any) -> Mistake:
    def make(settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch) -> object:
        options = {**settings.MAILERS["default"]["OPTIONS"], **change}
        settings.MAILERS = {
            "default": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": options}
        }
        return mail.mailers["default"]

    return make


def _environment(settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("POSTBUD_USERNAM", ACCOUNT)
    return EmailBackend()


def _postbud_under_mailers(settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch) -> object:
    settings.POSTBUD = {"APP_PASSWORD": APP_PASSWORD}
    return mail.mailers["default"]


def _handler(**kwargs: Any) -> Mistake:
    def make(settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch) -> object:
        return AdminAlertHandler(**kwargs)

    return make


#: The first cell of each row of the page's error table -> whose mistake it is (the legacy
#: EMAIL_* site, the MAILERS one, or None: the alert handler's, either site) and how to make it.
MISTAKES: dict[str, tuple[str | None, Mistake]] = {
    '`EMAIL_PORT = "four-six-five"`': ("legacy", _legacy({"EMAIL_PORT": "four-six-five"})),
    "`EMAIL_USE_SSL` and `EMAIL_USE_TLS` both `True`": (
        "legacy",
        _legacy({"EMAIL_USE_SSL": True, "EMAIL_USE_TLS": True}),
    ),
    '`POSTBUD = {"PROT": 465}`': ("legacy", _legacy({"POSTBUD": {"PROT": 465}})),
    '`POSTBUD = {"BACKGROUND": "yes"}`': ("legacy", _legacy({"POSTBUD": {"BACKGROUND": "yes"}})),
    '`POSTBUD = {"USERNAME": "other@gmail.com"}`, the app password in `EMAIL_HOST_PASSWORD`': (
        "legacy",
        _legacy({"POSTBUD": {"USERNAME": "other@gmail.com"}}),
    ),
    "`POSTBUD_USERNAM` in the environment": ("legacy", _environment),
    '`"usernme"` in `OPTIONS`': ("mailers", _options(usernme=ACCOUNT)),
    '`"port": 0` in `OPTIONS`': ("mailers", _options(port=0)),
    '`"fail_silently": True` in `OPTIONS`': ("mailers", _options(fail_silently=True)),
    '`POSTBUD = {"APP_PASSWORD": ...}` with `MAILERS`': ("mailers", _postbud_under_mailers),
    '`AdminAlertHandler(alert_tags="prod")`': (None, _handler(alert_tags="prod")),
    "`AdminAlertHandler(email_backend=..., using=...)`": (
        None,
        _handler(email_backend="django.core.mail.backends.console.EmailBackend", using="ops"),
    ),
}
TABLE = re.compile(r"^\| the site has \| the error \|\n\|---\|---\|\n((?:\|.*\n)+)", re.M)
ROW = re.compile(r"^\| (?P<mistake>.+?) \| `(?P<message>.+)` \|$", re.M)


def error_rows() -> list[tuple[str, str]]:
    return [
        (row["mistake"], row["message"])
        for table in TABLE.finditer(PAGE.read_text())
        for row in ROW.finditer(table[1])
    ]


def test_every_documented_error_is_produced() -> None:
    assert {mistake for mistake, _ in error_rows()} == set(MISTAKES)


@pytest.mark.parametrize(("mistake", "message"), error_rows())
def test_documented_error_texts_are_the_real_ones(
    mistake: str,
    message: str,
    docs_site: FakeGmail,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, make = MISTAKES[mistake]
    if project == "legacy" and has_mailers():
        pytest.skip("a mistake of a site without MAILERS")
    if project == "mailers" and not has_mailers():
        pytest.skip("a mistake of a MAILERS site (Django 6.1)")
    with pytest.raises(ImproperlyConfigured if project else postbud.ConfigurationError) as info:
        make(settings, monkeypatch)
    if project is not None and mistake != '`"fail_silently": True` in `OPTIONS`':
        assert isinstance(info.value, postbud.ConfigurationError)  # never fail_silently's
    if project == "mailers":
        assert isinstance(info.value, mail.InvalidMailer)
    assert str(info.value) == message
