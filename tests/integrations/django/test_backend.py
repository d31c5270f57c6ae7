"""django_postbud.EmailBackend on a site configured the pre-6.1 way (EMAIL_BACKEND and
Django's EMAIL_* settings, POSTBUD for the rest), against FakeGmail over TLS.

Every way Django sends mail goes through the backend here, serialised by Django itself
(``message.message()``), on Django 5.2 (compat32 ``SafeMIMEText``) and 6.x (a modern
``email.message.EmailMessage``). The settings lookup's order and its error texts are
tested at the end.
"""

from __future__ import annotations

import email.message
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import django
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils.translation import gettext_lazy
from django.views.debug import ExceptionReporter
from pytest_django import Settings as SettingsWrapper

import postbud
from django_postbud import EmailBackend
from django_postbud._settings import resolve, settings_for
from postbud.testing import FakeGmail, FakeGoogleTokens, replies

pytestmark = pytest.mark.usefixtures("legacy_site")

MODERN = django.VERSION >= (6, 0)
# Django 6.1 deprecates get_connection() and fail_silently (RemovedInDjango2028Warning, a
# PendingDeprecationWarning); these tests use them because legacy sites do.
GET_CONNECTION_DEPRECATED = pytest.mark.filterwarnings(
    r"ignore:get_connection\(\) is deprecated:PendingDeprecationWarning"
)
FAIL_SILENTLY_DEPRECATED = pytest.mark.filterwarnings(
    "ignore:The 'fail_silently' argument is deprecated:PendingDeprecationWarning"
)
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def render_report(info: pytest.ExceptionInfo[BaseException]) -> str:
    """What AdminEmailHandler mails for this exception: the text body, and the HTML one
    (include_html) that carries every frame's local variables. (The report starts at
    the test's frame, whose locals are read as the report is made: a test renders it
    before it names the secret it looks for.)"""
    reporter = ExceptionReporter(None, info.type, info.value, info.tb, is_email=True)
    return reporter.get_traceback_text() + reporter.get_traceback_html()


def assert_not_in_report(secret: str, report: str) -> None:
    for spelling in (secret, "".join(secret.split())):
        assert spelling not in report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- what Django sends ------------------------------------------------------------------


def test_send_mail_goes_to_gmail(legacy_site: FakeGmail) -> None:
    count = mail.send_mail("Welcome", "Thanks for signing up.", None, ["new@example.com"])
    assert count == 1
    (received,) = legacy_site.messages
    assert received.recipients == ("new@example.com",)
    assert received["Subject"] == "Welcome"
    assert received["From"] == "postbud.test@gmail.com"  # DEFAULT_FROM_EMAIL
    assert received.text == "Thanks for signing up.\n" or received.text == "Thanks for signing up."
    assert received.authenticated_as == legacy_site.username


def test_send_mass_mail_uses_one_connection(legacy_site: FakeGmail) -> None:
    data = [(f"News {i}", "Hello", None, [f"reader{i}@example.com"]) for i in range(3)]
    assert mail.send_mass_mail(data) == 3
    assert [m["Subject"] for m in legacy_site.messages] == ["News 0", "News 1", "News 2"]
    assert legacy_site.connections == 1


def test_mail_admins_and_managers(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    settings.SERVER_EMAIL = "postbud.test@gmail.com"
    mail.mail_admins("Disk full", "90% used", html_message="<p>90% used</p>")
    mail.mail_managers("New order", "Order 42")
    admins, managers = legacy_site.messages
    assert admins.recipients == ("ops@example.com",)
    assert admins["Subject"] == "[Django] Disk full"
    assert admins.html is not None and admins.html.strip() == "<p>90% used</p>"
    assert managers.recipients == ("managers@example.com",)
    assert managers["Subject"] == "[Django] New order"


def test_email_message_send_and_alternatives(legacy_site: FakeGmail) -> None:
    assert mail.EmailMessage("Plain", "Text only", to=["a@example.com"]).send() == 1
    rich = mail.EmailMultiAlternatives("Rich", "Text part", to=["b@example.com"])
    rich.attach_alternative("<h1>HTML part</h1>", "text/html")
    assert rich.send() == 1
    plain, multi = legacy_site.messages
    assert plain.text is not None and plain.text.strip() == "Text only"
    assert plain.html is None
    assert multi.text is not None and multi.text.strip() == "Text part"
    assert multi.html is not None and multi.html.strip() == "<h1>HTML part</h1>"


def test_attachments_file_bytes_and_parts(legacy_site: FakeGmail, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("numbers\n")
    message = mail.EmailMessage("Files", "See attached.", to=["a@example.com"])
    message.attach_file(str(report))
    message.attach("data.csv", b"a,b\n1,2\n", "text/csv")
    message.attach("blob.bin", b"\x00\x01\xff", "application/octet-stream")
    if MODERN:
        part = email.message.MIMEPart()
        part.set_content(b"%PDF-1.4", maintype="application", subtype="pdf", filename="doc.pdf")
        message.attach(part)
    else:  # Django 5.2: the legacy MIMEBase form (deprecated from 6.0)
        from email.mime.application import MIMEApplication

        legacy = MIMEApplication(b"%PDF-1.4", "pdf")
        legacy.add_header("Content-Disposition", "attachment", filename="doc.pdf")
        message.attach(legacy)
    assert message.send() == 1
    received = legacy_site.messages[0].message
    files = {p.get_filename(): p.get_content() for p in received.iter_attachments()}
    assert files["report.txt"].replace("\r\n", "\n") == "numbers\n"
    assert files["data.csv"].replace("\r\n", "\n") == "a,b\n1,2\n"
    assert files["blob.bin"] == b"\x00\x01\xff"
    assert files["doc.pdf"] == b"%PDF-1.4"


def test_inline_image(legacy_site: FakeGmail) -> None:
    message = mail.EmailMultiAlternatives("Logo", "See the logo.", to=["a@example.com"])
    message.attach_alternative('<img src="cid:logo@example.com">', "text/html")
    image: email.message.Message
    if MODERN:
        image = email.message.MIMEPart()
        image.set_content(
            PNG, maintype="image", subtype="png", disposition="inline", cid="<logo@example.com>"
        )
    else:
        from email.mime.image import MIMEImage

        image = MIMEImage(PNG, "png")
        image.add_header("Content-ID", "<logo@example.com>")
        image.add_header("Content-Disposition", "inline")
    message.attach(image)
    assert message.send() == 1
    parts = [p for p in legacy_site.messages[0].message.walk() if p["Content-ID"]]
    assert [str(p["Content-ID"]) for p in parts] == ["<logo@example.com>"]
    assert parts[0].get_content_disposition() == "inline"
    assert parts[0].get_content() == PNG


def test_cc_bcc_reply_to_and_headers(legacy_site: FakeGmail) -> None:
    message = mail.EmailMessage(
        "Headers",
        "Body",
        to=["to@example.com"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["replies@example.com"],
        headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:stop@example.com>"},
    )
    assert message.send() == 1
    (received,) = legacy_site.messages
    assert received.recipients == ("to@example.com", "cc@example.com", "hidden@example.com")
    assert received["Cc"] == "cc@example.com"
    assert received["Reply-To"] == "replies@example.com"
    assert received["X-Campaign"] == "spring"
    assert received["List-Unsubscribe"] == "<mailto:stop@example.com>"
    assert received["Bcc"] is None
    assert b"hidden@example.com" not in received.data  # the envelope only


def test_non_ascii_names_and_subject(legacy_site: FakeGmail) -> None:
    message = mail.EmailMessage(
        "Grüße aus Köln ✓",
        "Schöne Grüße",
        "Zoë Ops <postbud.test@gmail.com>",
        ["Jürgen Müller <jm@example.com>"],
    )
    assert message.send() == 1
    (received,) = legacy_site.messages
    assert received["Subject"] == "Grüße aus Köln ✓"
    assert received["From"] == "Zoë Ops <postbud.test@gmail.com>"
    assert received["To"] == "Jürgen Müller <jm@example.com>"
    assert received.text is not None and received.text.strip() == "Schöne Grüße"
    head = received.data.split(b"\r\n\r\n")[0]
    assert head.isascii()  # encoded words: no SMTPUTF8 needed
    assert not received.smtputf8


def test_lazy_translation_strings(legacy_site: FakeGmail) -> None:
    subject = gettext_lazy("Password changed")
    body = gettext_lazy("Your password was changed.")
    assert mail.send_mail(subject, body, None, [gettext_lazy("a@example.com")]) == 1
    (received,) = legacy_site.messages
    assert received["Subject"] == "Password changed"
    assert received.recipients == ("a@example.com",)


def test_default_from_email(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    settings.DEFAULT_FROM_EMAIL = "Shop <postbud.test@gmail.com>"
    mail.send_mail("One", "Body", None, ["a@example.com"])
    message = mail.EmailMessage("Two", "Body", to=["a@example.com"])
    message.from_email = ""  # emptied after construction: still DEFAULT_FROM_EMAIL
    message.send()
    assert [m["From"] for m in legacy_site.messages] == ["Shop <postbud.test@gmail.com>"] * 2
    assert message.from_email == ""  # the caller's message is left as it was


@pytest.mark.django_db
def test_password_reset_flow(legacy_site: FakeGmail, client: Client) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("ann", "ann@example.com", "old-password")
    response = client.post("/password-reset/", {"email": "ann@example.com"})
    assert response.status_code == 302
    (received,) = legacy_site.messages
    assert received.recipients == ("ann@example.com",)
    assert received["Subject"] == "Password reset on testserver"
    assert received.text is not None
    link = next(w for w in received.text.split() if "/reset/" in w)
    assert client.get(link.replace("http://testserver", "")).status_code == 302  # a valid link


def test_sendtestemail_command(legacy_site: FakeGmail) -> None:
    call_command("sendtestemail", "someone@example.com")
    call_command("sendtestemail", "--admins")
    first, admins = legacy_site.messages
    assert first.recipients == ("someone@example.com",)
    assert first["Subject"] is not None and first["Subject"].startswith("Test email from")
    assert admins.recipients == ("ops@example.com",)


@GET_CONNECTION_DEPRECATED
def test_with_get_connection_reuses_one_connection(legacy_site: FakeGmail) -> None:
    with mail.get_connection() as connection:
        for i in range(3):
            message = mail.EmailMessage(f"Batch {i}", "Body", to=["a@example.com"])
            assert connection.send_messages([message]) == 1
    assert connection.send_messages([]) == 0
    assert legacy_site.connections == 1
    # close() ended the batch; the pooled connection stays for the next send
    mail.send_mail("After", "Body", None, ["a@example.com"])
    assert legacy_site.connections == 1
    assert len(legacy_site.messages) == 4


@GET_CONNECTION_DEPRECATED
def test_open_logs_in_eagerly(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    backend = mail.get_connection()
    assert backend.open() is True
    assert legacy_site.logins == [legacy_site.username]
    assert backend.open() is False  # already open
    backend.close()
    settings.EMAIL_HOST_PASSWORD = "wxyzwxyzwxyzwxyz"
    with pytest.raises(postbud.AuthenticationError), mail.get_connection():
        pass  # the login is refused at open(), before any message


@GET_CONNECTION_DEPRECATED
def test_message_without_recipients_is_not_sent(legacy_site: FakeGmail) -> None:
    backend = mail.get_connection()
    assert backend.send_messages([mail.EmailMessage("Nobody", "Body")]) == 0
    assert legacy_site.messages == []
    assert legacy_site.connections == 0


@FAIL_SILENTLY_DEPRECATED
def test_fail_silently_swallows_an_unreachable_server(
    legacy_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.EMAIL_PORT = free_port()  # nothing listens there
    assert mail.send_mail("Down", "Body", None, ["a@example.com"], fail_silently=True) == 0
    with pytest.raises(postbud.TransportError):
        mail.send_mail("Down", "Body", None, ["a@example.com"])


@FAIL_SILENTLY_DEPRECATED
def test_fail_silently_does_not_hide_bad_configuration(settings: SettingsWrapper) -> None:
    settings.EMAIL_PORT = "four-six-five"
    with pytest.raises(ImproperlyConfigured) as info:
        mail.send_mail("Config", "Body", None, ["a@example.com"], fail_silently=True)
    assert isinstance(info.value, postbud.ConfigurationError)
    assert str(info.value) == "EMAIL_PORT must be a whole number, got 'four-six-five'."


@FAIL_SILENTLY_DEPRECATED
def test_fail_silently_does_not_hide_a_bad_message(legacy_site: FakeGmail) -> None:
    with pytest.raises(postbud.InvalidMessageError):
        mail.send_mail("Bad", "Body", None, ["not-an-address"], fail_silently=True)
    assert legacy_site.messages == []


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_one_line_switch_from_djangos_smtp_backend(
    mode: str,
    fake_gmail: FakeGmail,
    fake_gmail_starttls: FakeGmail,
    settings: SettingsWrapper,
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_gmail if mode == "ssl" else fake_gmail_starttls
    # A site that sends through Gmail with Django's own SMTP backend: these settings only
    # (the CA comes from the environment, which both backends trust).
    monkeypatch.setenv("SSL_CERT_FILE", fake.ca_file)
    monkeypatch.setattr(mail.utils.DNS_NAME, "_fqdn", "localhost", raising=False)
    settings.POSTBUD = {"SPOOL": str(spool)}  # the test's spool; not needed by a real site
    settings.EMAIL_HOST_USER = fake.username
    settings.EMAIL_HOST_PASSWORD = fake.app_password
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = fake.port
    settings.EMAIL_USE_SSL = mode == "ssl"
    settings.EMAIL_USE_TLS = mode == "starttls"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert mail.send_mail("Via Django", "Body", None, ["a@example.com"]) == 1
    settings.EMAIL_BACKEND = "django_postbud.EmailBackend"  # the one line
    assert mail.send_mail("Via postbud", "Body", None, ["a@example.com"]) == 1
    django_mail, ours = fake.messages
    assert (django_mail.authenticated_as, ours.authenticated_as) == (fake.username,) * 2
    assert (django_mail.recipients, django_mail["From"]) == (ours.recipients, ours["From"])
    assert ours["Subject"] == "Via postbud"


def test_background_returns_at_once_and_delivers_later(
    legacy_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "BACKGROUND": True}
    legacy_site.delay(0.5, "DATA")  # Gmail is slow today
    started = time.monotonic()
    assert mail.send_mail("Queued", "Body", None, ["a@example.com"]) == 1
    assert time.monotonic() - started < 0.5  # did not wait for the server
    assert legacy_site.messages == []
    backend = EmailBackend()
    assert backend.background
    assert backend.mailer.flush(10)
    assert [m["Subject"] for m in legacy_site.messages] == ["Queued"]


EXIT_SCRIPT = """
import sys
import django
from django.conf import settings

port, ca_file, spool, username, password, background = sys.argv[1:]
settings.configure(
    EMAIL_BACKEND="django_postbud.EmailBackend",
    EMAIL_HOST_USER=username,
    EMAIL_HOST_PASSWORD=password,
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=int(port),
    EMAIL_USE_SSL=True,
    DEFAULT_FROM_EMAIL=username,
    POSTBUD={"CA_FILE": ca_file, "SPOOL": spool, "BACKGROUND": background == "yes"},
)
django.setup()
from django.core.mail import send_mail

assert send_mail("Sent before exit", "Body", None, ["a@example.com"]) == 1
print("sent")
"""


@pytest.mark.parametrize("background", ["yes", "no"])
def test_exit_delivers_what_is_queued_and_says_goodbye(
    background: str, legacy_site: FakeGmail, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE", "DJANGO_SETTINGS_MODULE"))
    }
    args = [str(legacy_site.port), legacy_site.ca_file, str(tmp_path / "exit.sqlite")]
    args += [legacy_site.username, legacy_site.app_password, background]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "sent"), done.stderr
    assert "Traceback" not in done.stderr
    # queued mail goes out in postbud's exit drain; a settled Mailer's connection is
    # closed with a QUIT by the registry's exit hook
    assert [m["Subject"] for m in legacy_site.messages] == ["Sent before exit"]
    assert "QUIT" in legacy_site.commands


def test_xoauth2_with_a_token_file(
    legacy_site: FakeGmail,
    fake_google_tokens: FakeGoogleTokens,
    settings: SettingsWrapper,
    tmp_path: Path,
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    # POSTBUD gives the account and its token: the legacy EMAIL_HOST_PASSWORD (still
    # set by the fixture) is not combined with it (credentials resolve as one group).
    settings.POSTBUD = {
        **settings.POSTBUD,
        "USERNAME": legacy_site.username,
        "OAUTH_TOKEN_FILE": str(token_file),
        "OAUTH_TOKEN_URI": fake_google_tokens.token_uri,
    }
    assert mail.send_mail("OAuth", "Body", None, ["a@example.com"]) == 1
    assert "AUTH XOAUTH2" in legacy_site.commands
    assert len(fake_google_tokens.issued) == 1
    assert legacy_site.messages[0].authenticated_as == legacy_site.username


WRONG_PASSWORD = "wxyz wxyz wxyz wxyz"  # a module constant: no test frame holds it


@pytest.mark.parametrize("failure", ["wrong password", "refused after the password"])
def test_a_failed_send_in_a_view_does_not_report_the_password(
    failure: str, legacy_site: FakeGmail, settings: SettingsWrapper, client: Client
) -> None:
    if failure == "wrong password":
        settings.EMAIL_HOST_PASSWORD = WRONG_PASSWORD
    else:  # the password was sent and accepted as far as smtplib knows, then 454
        legacy_site.fail_next("AUTH", replies.TOO_MANY_LOGINS)
    with pytest.raises(postbud.AuthenticationError) as info:
        client.get("/send/")
    report = render_report(info)
    assert "AuthenticationError" in report
    assert "send_messages" in report  # the frames are in the report
    assert "email_messages" in report  # with their locals
    sent = WRONG_PASSWORD if failure == "wrong password" else legacy_site.app_password
    assert_not_in_report(sent, report)


def test_a_configuration_error_does_not_report_the_password(
    legacy_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.EMAIL_PORT = 0
    with pytest.raises(ImproperlyConfigured) as info:
        mail.send_mail("Config", "Body", None, ["a@example.com"])
    report = render_report(info)
    assert "EMAIL_PORT must be between 1 and 65535" in report
    assert "resolve" in report  # the lookup's frame and its locals are there, starred
    assert_not_in_report(legacy_site.app_password, report)


def test_no_dns_lookup(legacy_site: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object) -> str:
        raise AssertionError("socket.getfqdn() was called")

    monkeypatch.delattr(mail.utils.DNS_NAME, "_fqdn", raising=False)
    monkeypatch.setattr(socket, "getfqdn", no_dns)
    mail.send_mail("No DNS", "Body", "Shop <shop@example.org>", ["a@example.com"])
    assert not hasattr(mail.utils.DNS_NAME, "_fqdn")
    message_id = legacy_site.messages[0]["Message-ID"]
    assert message_id is not None and message_id.endswith("@example.org>")  # the sender's


def test_each_send_gets_a_new_message_id(legacy_site: FakeGmail) -> None:
    message = mail.EmailMessage("Twice", "Body", to=["a@example.com"])
    message.send()
    message.send()
    first, second = (m["Message-ID"] for m in legacy_site.messages)
    assert first != second
    assert "Message-ID" not in message.extra_headers
    kept = mail.EmailMessage("Kept", "Body", to=["a@example.com"], headers={"Message-Id": "<x@y>"})
    kept.send()
    assert legacy_site.messages[-1]["Message-ID"] == "<x@y>"


# -- the registry -----------------------------------------------------------------------


def test_backends_share_one_mailer(legacy_site: FakeGmail) -> None:
    first, second = EmailBackend(), EmailBackend()
    assert first is not second
    assert first.mailer is second.mailer
    mail.send_mail("One", "Body", None, ["a@example.com"])
    mail.send_mail("Two", "Body", None, ["a@example.com"])
    assert legacy_site.connections == 1


def test_override_settings_evicts_and_closes(legacy_site: FakeGmail, spool: Path) -> None:
    before = EmailBackend().mailer
    mail.send_mail("Before", "Body", None, ["a@example.com"])
    with override_settings(POSTBUD={"CA_FILE": legacy_site.ca_file, "SPOOL": ""}):
        assert "QUIT" in legacy_site.commands  # the old Mailer's connection was closed
        inside = EmailBackend().mailer
        assert inside is not before
        assert inside.settings.spool is None
        assert mail.send_mail("Inside", "Body", None, ["a@example.com"]) == 1
    after = EmailBackend().mailer
    assert after is not inside
    assert after.settings.spool == str(spool)
    assert not [t for t in threading.enumerate() if t.name == "postbud-outbox"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_connection(legacy_site: FakeGmail) -> None:
    mail.send_mail("Parent", "Body", None, ["a@example.com"])
    assert legacy_site.connections == 1
    pid = os.fork()
    if pid == 0:  # the child (gunicorn --preload's worker)
        code = 1
        try:
            code = 0 if mail.send_mail("Child", "Body", None, ["a@example.com"]) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert legacy_site.connections == 2  # the child did not write on the parent's session
    mail.send_mail("Parent again", "Body", None, ["a@example.com"])
    assert legacy_site.connections == 2  # and the parent's is still fine
    assert [m["Subject"] for m in legacy_site.messages] == ["Parent", "Child", "Parent again"]


# -- the settings lookup ----------------------------------------------------------------


def test_precedence_options_postbud_legacy_environment(
    legacy_site: FakeGmail, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUD_TIMEOUT", "7")
    monkeypatch.setenv("POSTBUD_DAILY_LIMIT", "123")
    settings.EMAIL_TIMEOUT = 8
    settings.POSTBUD = {**settings.POSTBUD, "TIMEOUT": 9}
    assert settings_for().timeout == 9  # POSTBUD over EMAIL_TIMEOUT over the environment
    assert settings_for(options={"timeout": 3}).timeout == 3  # keyword arguments first
    assert settings_for().daily_limit == 123  # only the environment has it
    del settings.POSTBUD["TIMEOUT"]
    assert settings_for().timeout == 8


def test_legacy_settings_only_when_overridden(settings: SettingsWrapper) -> None:
    del settings.EMAIL_HOST  # back to Django's default "localhost"
    del settings.EMAIL_PORT  # and 25
    del settings.EMAIL_USE_SSL
    resolved = settings_for()
    assert (resolved.host, resolved.port, resolved.security) == ("smtp.gmail.com", 465, "ssl")


def test_credentials_resolve_as_one_group(
    legacy_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "USERNAME": "other@gmail.com"}
    with pytest.raises(ImproperlyConfigured) as info:
        settings_for()  # POSTBUD gives the account: EMAIL_HOST_PASSWORD is not borrowed
    assert str(info.value).startswith(
        'No credentials for other@gmail.com: set POSTBUD["APP_PASSWORD"]'
    )
    given = settings_for(options={"username": "third@gmail.com", "password": "abcdefghijklmnop"})
    assert given.username == "third@gmail.com"


def test_smtp_names_are_aliases(legacy_site: FakeGmail) -> None:
    resolved = settings_for(
        options={"username": "a@gmail.com", "use_tls": True, "port": 587, "password": "a b c d"}
    )
    assert (resolved.security, resolved.port) == ("starttls", 587)
    assert resolved.app_password is not None and resolved.app_password.reveal() == "abcd"
    assert settings_for(options={"use_ssl": None, "host": None}).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"POSTBUD": {"PORT": "x"}}, "POSTBUD[\"PORT\"] must be a whole number, got 'x'."),
        (
            {"POSTBUD": {"PROT": 1}},
            'Unknown postbud setting POSTBUD["PROT"]. Did you mean POSTBUD["PORT"]?',
        ),
        ({"EMAIL_TIMEOUT": -1}, "EMAIL_TIMEOUT must be >= 0.001, got -1."),
        (
            {"EMAIL_USE_TLS": True},
            "EMAIL_USE_SSL and EMAIL_USE_TLS are both True: keep one (EMAIL_USE_SSL for port "
            "465, TLS from the first byte; EMAIL_USE_TLS for port 587, STARTTLS).",
        ),
        (
            {"POSTBUD": {"BACKGROUND": "yes"}},
            "POSTBUD[\"BACKGROUND\"] must be True or False, got 'yes'.",
        ),
    ],
)
def test_errors_name_the_setting_as_written(
    change: dict[str, object], text: str, settings: SettingsWrapper
) -> None:
    for name, value in change.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured) as info:
        settings_for()
    assert str(info.value) == text
    assert isinstance(info.value, postbud.ConfigurationError)


def test_keyword_errors_name_the_keyword(legacy_site: FakeGmail) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^port must be between 1 and 65535, got 0\.$"):
        EmailBackend(port=0)
    with pytest.raises(
        ImproperlyConfigured, match=r"^Unknown postbud setting usernme\. Did you mean username\?$"
    ):
        EmailBackend(usernme="a@gmail.com")
    with pytest.raises(ImproperlyConfigured, match=r"^ssl_certfile is a client certificate"):
        EmailBackend(ssl_certfile="client.pem")
    with pytest.raises(ImproperlyConfigured, match=r"^app_password and password are the same"):
        EmailBackend(app_password="a", password="b")


def test_unknown_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBUD_USERNAM", "a@gmail.com")
    with pytest.raises(ImproperlyConfigured) as info:
        settings_for()
    assert str(info.value) == (
        "Unknown postbud setting POSTBUD_USERNAM in the environment. Did you mean POSTBUD_USERNAME?"
    )


def test_background_is_returned_apart(settings: SettingsWrapper) -> None:
    assert resolve().background is False
    settings.POSTBUD = {**settings.POSTBUD, "BACKGROUND": True}
    assert resolve().background is True
    assert resolve(options={"background": False}).background is False


@pytest.mark.filterwarnings(
    "ignore:The 'auth_user' and 'auth_password' arguments are deprecated:PendingDeprecationWarning"
)
def test_auth_user_and_auth_password_of_send_mail(
    legacy_site: FakeGmail, settings: SettingsWrapper
) -> None:
    # send_mail(auth_user=, auth_password=) becomes get_connection(username=, password=)
    settings.EMAIL_HOST_PASSWORD = "wxyzwxyzwxyzwxyz"  # not used: the arguments win
    count = mail.send_mail(
        "Auth args",
        "Body",
        None,
        ["a@example.com"],
        auth_user=legacy_site.username,
        auth_password=legacy_site.app_password,
    )
    assert count == 1
    assert legacy_site.logins == [legacy_site.username]


# -- the shared state (issue 21) ------------------------------------------------------

STATE_PASSWORD = "s3cret-state-pass"


def test_state_keeps_the_url_password_apart(settings: SettingsWrapper) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:1/0"}
    resolved = resolve()
    assert resolved.settings.state == "redis://127.0.0.1:1/0"
    password = resolved.settings.state_password
    assert password is not None and password.reveal() == STATE_PASSWORD
    for text in (repr(resolved), str(resolved.settings), repr(resolved.settings)):
        assert STATE_PASSWORD not in text


def test_state_password_comes_from_postbud_or_the_environment(
    settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "STATE": "redis://127.0.0.1:1/0"}
    assert settings_for().state_password is None
    monkeypatch.setenv("POSTBUD_STATE_PASSWORD", "from-the-environment")
    password = settings_for().state_password
    assert password is not None and password.reveal() == "from-the-environment"
    settings.POSTBUD = {**settings.POSTBUD, "STATE_PASSWORD": STATE_PASSWORD}
    resolved = resolve()
    password = resolved.settings.state_password
    assert password is not None and password.reveal() == STATE_PASSWORD  # POSTBUD first
    assert STATE_PASSWORD not in repr(resolved)
    # The URL's password wins over STATE_PASSWORD (Settings' precedence).
    settings.POSTBUD = {**settings.POSTBUD, "STATE": "redis://:in-the-url@127.0.0.1:1/0"}
    password = settings_for().state_password
    assert password is not None and password.reveal() == "in-the-url"


def test_a_bad_state_url_names_it_without_its_password(settings: SettingsWrapper) -> None:
    settings.POSTBUD = {
        **settings.POSTBUD,
        "STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:99999/0",
    }
    with pytest.raises(ImproperlyConfigured) as info:
        settings_for()
    text = str(info.value)
    assert text.startswith("POSTBUD[\"STATE\"] 'redis://:********@127.0.0.1:99999/0' is not")
    assert STATE_PASSWORD not in text
    assert isinstance(info.value, postbud.ConfigurationError)
    settings.POSTBUD = {**settings.POSTBUD, "STATE": "http://127.0.0.1/"}
    with pytest.raises(ImproperlyConfigured, match=r'^POSTBUD\["STATE"\] must be a redis://'):
        settings_for()


# Module constants: no test frame holds the password (the report shows every frame's locals).
STATE_ERRORS = {
    "in the url": {"STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:99999/0"},  # its own error
    "STATE_PASSWORD": {"STATE": "redis://127.0.0.1:6379/0", "STATE_PASSWORD": STATE_PASSWORD},
}
# Django's report lists settings.POSTBUD (text, then HTML), hiding only keys such as
# *PASSWORD*: a password inside the STATE URL shows there (postbud.W006 says so).
POSTBUD_LISTED = re.compile(
    r"^POSTBUD = \{.*?\}$|<td>POSTBUD</td>\s*<td class=\"code\"><pre>.*?</pre>", re.M | re.S
)


@pytest.mark.parametrize("where", list(STATE_ERRORS))
def test_a_configuration_error_does_not_report_the_state_password(
    where: str, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, **STATE_ERRORS[where]}
    if where == "STATE_PASSWORD":
        settings.EMAIL_PORT = 0  # another setting's error
    with pytest.raises(ImproperlyConfigured) as info:
        mail.send_mail("Config", "Body", None, ["a@example.com"])
    report = render_report(info)
    assert "resolve" in report  # the lookup's frame and its locals are in the report
    if where == "in the url":
        assert "POSTBUD[&quot;STATE&quot;] &#x27;redis://:********@127.0.0.1:99999/0" in report
        assert len(POSTBUD_LISTED.findall(report)) == 2
        assert STATE_PASSWORD in report  # in Django's list of settings, as the site wrote it
        report = POSTBUD_LISTED.sub("", report)
    else:
        assert "EMAIL_PORT must be between 1 and 65535" in report
        assert "&#x27;STATE_PASSWORD&#x27;: &#x27;********************&#x27;" in report
    assert_not_in_report(STATE_PASSWORD, report)  # no frame, no message


def test_machines_is_a_postbud_key_of_the_site(settings: SettingsWrapper) -> None:
    assert resolve().machines == 1
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": 3}
    assert resolve().machines == 3
    assert resolve(options={"background": True}).machines == 3
    with pytest.raises(ImproperlyConfigured, match=r"^Unknown postbud setting machines\."):
        EmailBackend(machines=2)  # the site's, not one mailer's option


@pytest.mark.parametrize("value", [0, -1, "3", 2.5, True, None])
def test_machines_must_be_a_whole_number_of_at_least_one(
    value: object, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": value}
    if value is None:  # not given: the default
        assert resolve().machines == 1
        return
    with pytest.raises(ImproperlyConfigured) as info:
        resolve()
    assert str(info.value) == (
        f'POSTBUD["MACHINES"] must be a whole number >= 1 (how many machines the site runs '
        f"on), got {value!r}."
    )
