"""django_postbud.AdminAlertHandler: Django's error mails with postbud's storm control.

500s from the test client through the handler on ``django.request``: to FakeGmail through
the site's postbud backend, and to ``mail.outbox`` through the locmem backend of Django's
test environment (the default here, as in users' test suites).
"""

from __future__ import annotations

import logging
import logging.config
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client
from django.views.debug import ExceptionReporter

import postbud
from django_postbud import AdminAlertHandler
from postbud.testing import FakeGmail, ReceivedMessage

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
MASKED = "********************"  # SafeExceptionReporterFilter.cleansed_substitute
MAILERS_PROJECT = hasattr(django.conf.settings, "MAILERS")
ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TerseReporter(ExceptionReporter):
    """A site's own reporter_class."""

    def get_traceback_text(self) -> str:
        return f"terse report of {self.exc_type.__name__}"

    def get_traceback_html(self) -> str:
        return "<html><body><p>terse html</p></body></html>"


class BrokenBackend(BaseEmailBackend):
    """A site's backend whose server is down."""

    calls = 0

    def send_messages(self, messages: Any) -> int:
        type(self).calls += 1
        raise ConnectionRefusedError("the relay is down")


Attach = Callable[..., AdminAlertHandler]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def attach(clock: Clock) -> Iterator[Attach]:
    """The handler alone on django.request (Django's own mail_admins, on the "django"
    logger, must not see these records)."""
    logger = logging.getLogger("django.request")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    made: list[AdminAlertHandler] = []

    def build(**kwargs: Any) -> AdminAlertHandler:
        handler = AdminAlertHandler(clock=clock, **kwargs)
        logger.handlers[:] = [handler]
        logger.propagate = False
        made.append(handler)
        return handler

    yield build
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])
    for handler in made:
        handler.close()


def gmail_settings(settings: Any, fake: FakeGmail, **policy: Any) -> None:
    """The site sends through postbud to ``fake`` (legacy EMAIL_BACKEND + POSTBUD, or a
    MAILERS alias); ``policy``: process-wide POSTBUD keys."""
    values = fake.settings_values()
    if MAILERS_PROJECT:
        settings.MAILERS = {
            "default": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": values}
        }
        settings.POSTBUD = {k.upper(): v for k, v in policy.items()}
    else:
        settings.EMAIL_BACKEND = "django_postbud.EmailBackend"
        settings.POSTBUD = {k.upper(): v for k, v in {**values, **policy}.items()}


@pytest.fixture
def gmail(settings: Any, fake_gmail: FakeGmail) -> FakeGmail:
    gmail_settings(settings, fake_gmail)
    return fake_gmail


def client() -> Client:
    return Client(raise_request_exception=False)


def hit(path: str = "/boom/", times: int = 1) -> None:
    browser = client()
    for _ in range(times):
        assert browser.get(path).status_code == 500


def delivered(handler: AdminAlertHandler) -> None:
    """Tick and wait until the route's outbox has sent what it holds."""
    handler.tick()
    assert handler.mailer is not None and handler.mailer.flush(10)


def kinds(messages: list[ReceivedMessage]) -> list[tuple[str | None, int]]:
    return [(m["X-Postbud-Alert"], int(m["X-Postbud-Count"] or 0)) for m in messages]


def outbox_kinds() -> list[tuple[str, int]]:
    return [
        (m.extra_headers["X-Postbud-Alert"], int(m.extra_headers["X-Postbud-Count"]))
        for m in mail.outbox
    ]


# -- storm control ------------------------------------------------------------------------


def test_two_hundred_500s_make_one_alert_and_one_follow_up(
    gmail: FakeGmail, attach: Attach, clock: Clock
) -> None:
    handler = attach()
    hit(times=200)
    delivered(handler)
    [first] = gmail.messages
    assert first["Subject"] == "[Django] ERROR (EXTERNAL IP): Internal Server Error: /boom/"
    assert (first["X-Postbud-Alert"], first["X-Postbud-Count"]) == ("first", "1")
    assert first.recipients == ("ops@example.com",)
    assert first["From"] == "postbud.test@gmail.com"  # SERVER_EMAIL
    assert "RuntimeError" in (first.text or "") and "the checkout is broken" in (first.text or "")

    clock.advance(601)  # the cooldown ended: the repeats go out as one count
    delivered(handler)
    assert kinds(gmail.messages) == [("first", 1), ("follow-up", 199)]
    follow = gmail.messages[1]
    assert follow["Subject"] == (
        "[Django] ERROR (EXTERNAL IP): Internal Server Error: /boom/ (199 more since 08:00 UTC)"
    )
    assert "This error happened 199 more time(s) since 08:00 UTC" in (follow.text or "")
    assert handler.stats() == {"records": 200, "first": 1, "follow-up": 1, "digest": 0}


def test_alerts_come_from_server_email(
    settings: Any, gmail: FakeGmail, attach: Attach, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SERVER_EMAIL = "Shop errors <postbud.test+errors@gmail.com>"
    handler = attach()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        hit()
        delivered(handler)
    [alert] = gmail.messages
    assert alert["From"] == "Shop errors <postbud.test+errors@gmail.com>"
    assert alert.mail_from == "postbud.test@gmail.com"  # the account logs in and sends
    assert "Gmail" in caplog.text  # postbud's one warning: Gmail may rewrite the From


def test_a_mail_setting_change_first_sends_what_the_old_route_holds(
    settings: Any, gmail: FakeGmail, attach: Attach
) -> None:
    handler = attach()
    hit(times=3)
    delivered(handler)
    old = handler.mailer
    gmail_settings(settings, gmail, alert_tag="canary")  # override_settings: new Mailers
    # The old route reported its count before the registry closed its Mailer...
    assert kinds(gmail.messages) == [("first", 1), ("follow-up", 2)]
    hit()
    delivered(handler)
    assert handler.mailer is not old  # ...and the next error uses the new settings
    assert (gmail.messages[-1]["Subject"] or "").startswith("[canary] [Django] ERROR")


CHILD = """
import logging, sys
import django
django.setup()
from django.test import Client
import postbud
from django_postbud import AdminAlertHandler

handler = AdminAlertHandler()
logger = logging.getLogger("django.request")
logger.handlers[:] = [handler]
logger.propagate = False
browser = Client(raise_request_exception=False)
for _ in range(int(sys.argv[1])):
    assert browser.get("/boom/").status_code == 500
handler.close()
"""


@pytest.mark.slow
def test_two_worker_processes_on_one_spool_send_one_alert(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE", "DJANGO_"))
    }
    env.update({f"POSTBUD_{k.upper()}": str(v) for k, v in fake_gmail.settings_values().items()})
    env["POSTBUD_SPOOL"] = str(tmp_path / "shared.sqlite")
    env["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings_legacy"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "tests" / "integrations" / "django"), env.get("PYTHONPATH", "")]
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", CHILD, "50"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [child.communicate(timeout=60)[1] for child in children]
    for child, err in zip(children, errors, strict=True):
        assert child.returncode == 0, err
        assert "cannot send alerts" not in err
    got = kinds(fake_gmail.messages)
    assert [k for k, _ in got].count("first") == 1, got
    assert sum(n for _, n in got) == 100
    assert all(
        (m["Subject"] or "").startswith("[Django] ERROR (EXTERNAL IP): ")
        for m in fake_gmail.messages
    )


def test_past_the_cap_errors_go_into_one_digest(attach: Attach, clock: Clock) -> None:
    handler = attach(alert_cap=1)
    hit()
    logging.getLogger("django.request").error("the queue is stuck")
    handler.flush()  # the first alert; the other error waits for the hour's digest
    assert outbox_kinds() == [("first", 1), ("digest", 1)]
    digest = mail.outbox[1]
    assert digest.subject == "[Django] Alert digest: 1 alert(s) of 1 kind(s) since 08:00 UTC"
    assert "the queue is stuck" in digest.body


# -- what the mails say ----------------------------------------------------------------------


def test_the_body_is_djangos_filtered_report(settings: Any, attach: Attach) -> None:
    settings.PAYMENT_API_KEY = "sk-live-do-not-mail"
    handler = attach(include_html=True)
    assert (
        client()
        .post("/boom/login/", {"user": "ann", "password": "hunter2-do-not-mail"})
        .status_code
        == 500
    )
    handler.flush()
    [alert] = mail.outbox
    [(page, mimetype)] = alert.alternatives
    assert mimetype == "text/html" and "<!DOCTYPE html>" in page
    for body in (alert.body, page):
        assert "RuntimeError" in body and "the login is broken" in body
        assert "PAYMENT_API_KEY" in body and "SECRET_KEY" in body and MASKED in body
        assert "sk-live-do-not-mail" not in body
        assert "django-postbud-tests-only" not in body  # SECRET_KEY's value
        assert "hunter2-do-not-mail" not in body
        assert "ann" in body  # POST data that is not sensitive is shown
    assert alert.body.startswith("Internal Server Error: /boom/login/\n\n")  # Django's layout
    assert "Sent by postbud's AdminAlertHandler." in alert.body


def test_without_include_html_the_alert_is_text_only(attach: Attach) -> None:
    handler = attach()
    hit()
    handler.flush()
    [alert] = mail.outbox
    assert alert.alternatives == [] and "Traceback" in alert.body


def test_the_subject_keeps_djangos_shape(settings: Any, attach: Attach) -> None:
    settings.EMAIL_SUBJECT_PREFIX = "[Shop] "
    handler = attach(alert_tag="prod")
    hit()
    settings.INTERNAL_IPS = ["127.0.0.1"]  # the test client's address
    # (INTERNAL_IPS is no mail setting: the same handler state counts on)
    hit("/boom/login/")
    logging.getLogger("django.request").error("two\nlines\r%s", "x" * 2000)
    handler.flush()
    subjects = [m.subject for m in mail.outbox]
    assert subjects[0] == "[prod] [Shop] ERROR (EXTERNAL IP): Internal Server Error: /boom/"
    assert subjects[1] == "[prod] [Shop] ERROR (internal IP): Internal Server Error: /boom/login/"
    assert subjects[2].startswith("[prod] [Shop] ERROR: two\\nlines\\rxxx")
    assert len(subjects[2]) == 989 and subjects[2].endswith("…")
    assert all(m.from_email == "postbud.test@gmail.com" for m in mail.outbox)  # SERVER_EMAIL


def test_a_follow_up_keeps_the_subject_and_says_the_count(
    settings: Any, attach: Attach, clock: Clock
) -> None:
    settings.EMAIL_SUBJECT_PREFIX = "[Shop] "
    handler = attach()
    hit(times=5)
    handler.tick()
    clock.advance(300)
    hit(times=2)
    clock.advance(301)
    handler.tick()
    assert handler.mailer is not None and handler.mailer.flush(10)
    assert outbox_kinds() == [("first", 1), ("follow-up", 6)]
    follow = mail.outbox[1]
    assert follow.subject == (
        "[Shop] ERROR (EXTERNAL IP): Internal Server Error: /boom/ (6 more since 08:00 UTC)"
    )
    assert "the last at 2027-01-15 08:05:00 UTC" in follow.body
    assert "postbud_django_subject" not in follow.body


def test_reporter_class(attach: Attach) -> None:
    handler = attach(include_html=True, reporter_class=f"{__name__}.TerseReporter")
    hit()
    handler.flush()
    [alert] = mail.outbox
    assert "terse report of RuntimeError" in alert.body
    assert "terse html" in alert.alternatives[0][0]


def test_a_reporter_class_that_does_not_exist_fails_the_logging_config() -> None:
    with pytest.raises(ImportError):
        AdminAlertHandler(reporter_class="djangoproject.views.NoSuchReporter")


# -- recipients -----------------------------------------------------------------------------


def test_empty_admins_sends_nothing(settings: Any, attach: Attach) -> None:
    settings.ADMINS = []
    handler = attach()
    hit(times=3)
    handler.flush()
    assert mail.outbox == [] and handler.stats()["records"] == 0


def test_plain_address_admins(settings: Any, attach: Attach) -> None:
    settings.ADMINS = ["ops@example.com", "dev@example.com"]
    handler = attach()
    hit()
    handler.flush()
    [alert] = mail.outbox
    assert alert.to == ["ops@example.com", "dev@example.com"]


def test_a_bad_address_in_admins_is_said_not_raised(
    settings: Any, attach: Attach, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ADMINS = ["ops@@example.com"]
    attach()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        hit(times=2)
    said = [r.getMessage() for r in caplog.records if "cannot send alerts" in r.getMessage()]
    assert said == [
        "postbud's AdminAlertHandler cannot send alerts: ADMINS: 'ops@@example.com' is not "
        "a valid email address (missing local part)."
    ]


def test_admins_changed_mid_run_goes_to_the_new_admins(settings: Any, attach: Attach) -> None:
    handler = attach()
    hit()
    handler.flush()
    settings.ADMINS = [("Night shift", "night@example.com")]
    hit()
    handler.flush()
    assert [m.to for m in mail.outbox] == [["ops@example.com"], ["night@example.com"]]


# -- the test environment -----------------------------------------------------------------------


def test_under_locmem_the_alert_lands_in_mail_outbox(fake_gmail: FakeGmail, attach: Attach) -> None:
    handler = attach()
    hit(times=3)
    handler.flush()  # counts pending repeats now too
    assert outbox_kinds() == [("first", 1), ("follow-up", 2)]
    assert mail.outbox[0].to == ["ops@example.com"]
    assert mail.outbox[0].extra_headers["Message-ID"].endswith("@gmail.com>")
    assert fake_gmail.messages == []


def test_an_explicit_postbud_email_backend_still_sends_no_real_mail_in_tests(
    settings: Any, fake_gmail: FakeGmail, attach: Attach
) -> None:
    if MAILERS_PROJECT:
        pytest.skip("email_backend is for sites without MAILERS")
    settings.POSTBUD = {k.upper(): v for k, v in fake_gmail.settings_values().items()}
    handler = attach(email_backend="django_postbud.EmailBackend")
    hit()
    handler.flush()
    assert len(mail.outbox) == 1 and fake_gmail.messages == []


# -- never raise, never block -----------------------------------------------------------------


def test_logging_never_raises_or_blocks_with_gmail_down(
    settings: Any, fake_gmail: FakeGmail, attach: Attach
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        values = fake_gmail.settings_values(port=port, timeout=1)
        if MAILERS_PROJECT:
            settings.MAILERS = {
                "default": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": values}
            }
            settings.POSTBUD = {"EXIT_TIMEOUT": 0.2}
        else:
            settings.EMAIL_BACKEND = "django_postbud.EmailBackend"
            settings.POSTBUD = {**{k.upper(): v for k, v in values.items()}, "EXIT_TIMEOUT": 0.2}
        handler = attach()
        logger = logging.getLogger("django.request")
        slowest = 0.0
        for n in range(100):
            try:
                raise ConnectionError("the database is down")
            except ConnectionError:
                started = time.perf_counter()
                logger.exception("Internal Server Error: %s", f"/orders/{n}")
                slowest = max(slowest, time.perf_counter() - started)
        handler.tick()
        assert handler.stats()["records"] == 100 and handler.stats()["first"] == 1
        assert slowest < 0.5  # the first renders Django's report; none waits for Gmail
    assert fake_gmail.messages == []


def test_a_failing_django_backend_never_reaches_the_request(settings: Any, attach: Attach) -> None:
    if MAILERS_PROJECT:
        settings.MAILERS = {"default": {"BACKEND": f"{__name__}.BrokenBackend"}}
    else:
        settings.EMAIL_BACKEND = f"{__name__}.BrokenBackend"
    BrokenBackend.calls = 0
    handler = attach(exit_timeout=0.2)
    hit(times=3)  # each a plain 500: nothing raised out of logger.error()
    handler.tick()
    assert handler.mailer is not None
    handler.mailer.flush(1)
    assert BrokenBackend.calls >= 1  # tried from postbud's thread...
    assert handler.mailer.stats()["queued"] == 1  # ...and kept for a retry


def test_missing_credentials_never_raise_and_are_said_once(
    settings: Any, attach: Attach, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in list(os.environ):
        if name.startswith("POSTBUD_") and name != "POSTBUD_SPOOL":
            monkeypatch.delenv(name)
    if MAILERS_PROJECT:
        settings.MAILERS = {
            "default": {
                "BACKEND": "django_postbud.EmailBackend",
                "OPTIONS": {"username": "me@gmail.com"},
            }
        }
    else:
        settings.EMAIL_BACKEND = "django_postbud.EmailBackend"
        settings.POSTBUD = {"USERNAME": "me@gmail.com"}
    handler = attach()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        hit(times=3)
    said = [r.getMessage() for r in caplog.records if "cannot send alerts" in r.getMessage()]
    assert len(said) == 1 and "No credentials for me@gmail.com" in said[0], said
    assert handler.mailer is None


def test_a_broken_reporter_still_sends_the_alert(attach: Attach) -> None:
    class Broken(ExceptionReporter):
        def get_traceback_text(self) -> str:
            raise ValueError("no report today")

    handler = attach(reporter_class=Broken)
    hit()
    handler.flush()
    [alert] = mail.outbox
    assert alert.subject == "[Django] ERROR (EXTERNAL IP): Internal Server Error: /boom/"
    assert "Django's report could not be made (ValueError: no report today)" in alert.body
    assert "RuntimeError: the checkout is broken" in alert.body  # postbud's own description


# -- configuration ------------------------------------------------------------------------------


NO_SETTINGS_YET = """
import logging
from django.conf import settings
from django_postbud import AdminAlertHandler

AdminAlertHandler(include_html=True, alert_tag="prod").close()
assert not settings.configured  # the handler read no setting
settings.configure(
    SECRET_KEY="not-empty",
    ADMINS=["ops@example.com"],
    SERVER_EMAIL="errors@example.com",
    EMAIL_BACKEND="django_postbud.EmailBackend",  # and no credentials anywhere
    LOGGING={  # configured by django.setup(), before the apps are ready
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"mail_admins": {
            "class": "django_postbud.AdminAlertHandler",
            "level": "ERROR",
            "alert_tag": "prod",
        }},
        "loggers": {"django.request": {"handlers": ["mail_admins"], "propagate": False}},
    },
)
import django
django.setup()
log = logging.getLogger("django.request")

def fail():
    try:
        raise KeyError("cart")
    except KeyError:
        log.exception("checkout failed")

fail()
fail()  # said once
settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # as Django's tests do
fail()
[handler] = log.handlers
handler.flush()
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
for alert in mail.outbox:
    print(alert.subject, "|", alert.from_email, "|", alert.to)
"""


@pytest.mark.slow
def test_dict_config_before_settings_and_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTBUD_", "DJANGO_"))}
    env["POSTBUD_SPOOL"] = ""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", NO_SETTINGS_YET],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "cannot send alerts" in line]
    assert said == [
        "postbud's AdminAlertHandler cannot send alerts: "
        + 'POSTBUD["USERNAME"] is missing: set it to the Gmail or Workspace address you send '
        "from, such as 'me@gmail.com'."
    ], done.stderr
    assert done.stdout.splitlines() == [
        "[prod] [Django] ERROR: checkout failed | errors@example.com | ['ops@example.com']"
    ]


def test_a_mistyped_option_fails_the_logging_config() -> None:
    # (dictConfig in this process would close pytest's own handlers: the subprocess
    # test above goes through it; this is the constructor it calls.)
    with pytest.raises(postbud.ConfigurationError) as failed:
        AdminAlertHandler(include_html=True, alert_tags="prod")
    assert str(failed.value) == (
        "Unknown postbud setting 'alert_tags' for AdminAlertHandler. Did you mean 'alert_tag'?"
    )


def test_email_backend_and_using_together_are_refused() -> None:
    with pytest.raises(ValueError, match="email_backend or using, not both"):
        AdminAlertHandler(email_backend="django.core.mail.backends.locmem.EmailBackend", using="x")


# -- MAILERS (Django 6.1) ----------------------------------------------------------------------


needs_mailers = pytest.mark.skipif(
    django.VERSION < (6, 1) or not MAILERS_PROJECT,
    reason="using= needs Django 6.1's MAILERS (the settings_mailers project)",
)


@needs_mailers
def test_using_an_alias_whose_backend_is_not_postbuds(
    settings: Any, fake_gmail: FakeGmail, attach: Attach
) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "django_postbud.EmailBackend",
            "OPTIONS": fake_gmail.settings_values(),
        },
        "ops": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
    }
    handler = attach(using="ops")
    hit(times=4)
    handler.flush()
    assert outbox_kinds() == [("first", 1), ("follow-up", 3)]
    assert fake_gmail.messages == []


@needs_mailers
def test_using_the_postbud_alias(settings: Any, fake_gmail: FakeGmail, attach: Attach) -> None:
    settings.MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        "gmail": {
            "BACKEND": "django_postbud.EmailBackend",
            "OPTIONS": fake_gmail.settings_values(),
        },
    }
    handler = attach(using="gmail")
    hit()
    delivered(handler)
    assert kinds(fake_gmail.messages) == [("first", 1)] and mail.outbox == []


@needs_mailers
def test_email_backend_under_mailers_is_ignored_with_a_warning(
    attach: Attach, caplog: pytest.LogCaptureFixture
) -> None:
    handler = attach(email_backend="django.core.mail.backends.console.EmailBackend")
    with caplog.at_level(logging.WARNING, logger="postbud"):
        hit()
        handler.flush()
    assert "ignores email_backend='django.core.mail.backends.console.EmailBackend'" in caplog.text
    assert len(mail.outbox) == 1  # MAILERS["default"]: locmem in Django's tests


@needs_mailers
def test_a_failed_send_in_a_view_does_not_mail_the_password(
    settings: Any, fake_gmail: FakeGmail, attach: Attach
) -> None:
    wrong = "wxyz wxyz wxyz wxyz"
    settings.MAILERS = {
        "default": {
            "BACKEND": "django_postbud.EmailBackend",
            "OPTIONS": fake_gmail.settings_values(app_password=wrong),
        },
        "ops": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
    }
    handler = attach(using="ops", include_html=True)  # the HTML report shows frame locals
    assert client().get("/send/").status_code == 500  # the view's send_mail: 535
    handler.flush()
    [alert] = mail.outbox
    page = alert.alternatives[0][0]
    assert "AuthenticationError" in alert.body and "send_messages" in page
    for body in (alert.body, page):
        assert wrong not in body and wrong.replace(" ", "") not in body


@needs_mailers
def test_using_an_alias_that_does_not_exist_is_said(
    attach: Attach, caplog: pytest.LogCaptureFixture
) -> None:
    attach(using="nope")
    with caplog.at_level(logging.WARNING, logger="postbud"):
        hit()
    assert "MAILERS has no alias 'nope'" in caplog.text
    assert mail.outbox == []
