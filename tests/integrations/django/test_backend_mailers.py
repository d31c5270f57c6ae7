"""django_postbud.EmailBackend as a Django 6.1 ``MAILERS`` backend, against FakeGmail.

Run with ``--ds=djangoproject.settings_mailers`` on Django 6.1 (skipped otherwise). Each
alias is configured by its OPTIONS alone; POSTBUD holds what the process shares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from pytest_django import Settings as SettingsWrapper

import postbud
from django_postbud import EmailBackend
from django_postbud._settings import settings_for
from postbud.testing import FakeGmail

BACKEND = "django_postbud.EmailBackend"
Options = Callable[..., dict[str, Any]]
pytestmark = pytest.mark.usefixtures("mailers_site")

GET_CONNECTION_DEPRECATED = pytest.mark.filterwarnings(
    r"ignore:get_connection\(\) is deprecated:PendingDeprecationWarning"
)


@pytest.fixture
def two_aliases(
    mailers_site: FakeGmail,
    fake_gmail_starttls: FakeGmail,
    settings: SettingsWrapper,
    options_for: Options,
) -> tuple[FakeGmail, FakeGmail]:
    """ "default" on the implicit-TLS fake, "alerts" on the STARTTLS one."""
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND, "OPTIONS": options_for(mailers_site)},
        "alerts": {"BACKEND": BACKEND, "OPTIONS": options_for(fake_gmail_starttls)},
    }
    return mailers_site, fake_gmail_starttls


def invalid_mailer() -> type[Exception]:
    invalid: type[Exception] = mail.InvalidMailer
    return invalid


def test_send_mail_through_the_default_alias(mailers_site: FakeGmail) -> None:
    assert mail.send_mail("Welcome", "Thanks", None, ["new@example.com"]) == 1
    (received,) = mailers_site.messages
    assert received["Subject"] == "Welcome"
    assert received.authenticated_as == mailers_site.username


def test_a_second_alias_and_using(two_aliases: tuple[FakeGmail, FakeGmail]) -> None:
    default, alerts = two_aliases
    assert mail.send_mail("To default", "Body", None, ["a@example.com"]) == 1
    assert mail.send_mail("To alerts", "Body", None, ["a@example.com"], using="alerts") == 1
    message = mail.EmailMessage("Also alerts", "Body", to=["b@example.com"])
    assert message.send(using="alerts") == 1
    assert [m["Subject"] for m in default.messages] == ["To default"]
    assert [m["Subject"] for m in alerts.messages] == ["To alerts", "Also alerts"]
    assert settings_for("alerts").security == "starttls"
    assert settings_for().security == "ssl"  # alias None is "default"


def test_each_access_is_a_new_instance_sharing_one_mailer(mailers_site: FakeGmail) -> None:
    first, second = mail.mailers["default"], mail.mailers["default"]
    assert isinstance(first, EmailBackend)
    assert first is not second
    assert first.mailer is second.mailer
    assert first.alias == "default"
    for backend in (first, second, mail.mailers.default):
        assert backend.send_messages([mail.EmailMessage("x", "y", to=["a@example.com"])]) == 1
    assert mailers_site.connections == 1


def test_unknown_option_raises_invalid_mailer(
    mailers_site: FakeGmail, settings: SettingsWrapper, options_for: Options
) -> None:
    options = {**options_for(mailers_site), "usernme": "typo@gmail.com"}
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    with pytest.raises(invalid_mailer()) as info:
        mail.mailers["default"]
    assert str(info.value) == (
        "MAILERS['default']: Unknown option 'usernme' for django_postbud.EmailBackend. "
        "Did you mean 'username'?"
    )
    assert isinstance(info.value, postbud.ConfigurationError)


def test_bad_option_value_names_the_option(
    mailers_site: FakeGmail, settings: SettingsWrapper, options_for: Options
) -> None:
    options = options_for(mailers_site, port=0)
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    with pytest.raises(invalid_mailer()) as info:
        mail.send_mail("Bad", "Body", None, ["a@example.com"])
    assert str(info.value) == (
        'MAILERS["default"]["OPTIONS"]["port"] must be between 1 and 65535, got 0.'
    )
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, postbud.ConfigurationError)


def test_fail_silently_is_not_an_option(
    mailers_site: FakeGmail, settings: SettingsWrapper, options_for: Options
) -> None:
    options = {**options_for(mailers_site), "fail_silently": True}
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    with pytest.raises(invalid_mailer(), match="Unknown options 'fail_silently'"):
        mail.mailers["default"]  # Django's own rule, from BaseEmailBackend


def test_sendtestemail_using(two_aliases: tuple[FakeGmail, FakeGmail]) -> None:
    default, alerts = two_aliases
    call_command("sendtestemail", "someone@example.com", "--using", "alerts")
    assert default.messages == []
    assert [m.recipients for m in alerts.messages] == [("someone@example.com",)]


def test_postbud_never_supplies_credentials(
    mailers_site: FakeGmail, settings: SettingsWrapper, spool: Path
) -> None:
    settings.POSTBUD = {"SPOOL": str(spool), "APP_PASSWORD": mailers_site.app_password}
    with pytest.raises(invalid_mailer()) as info:
        settings_for()
    assert str(info.value) == (
        'POSTBUD["APP_PASSWORD"] is not read when settings.MAILERS is defined: POSTBUD holds '
        "only what the process shares (spool, state, alert policy); put it in each alias's "
        'OPTIONS, as MAILERS["default"]["OPTIONS"]["app_password"].'
    )


def test_credentials_come_only_from_the_options(
    mailers_site: FakeGmail,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    options_for: Options,
) -> None:
    monkeypatch.setenv("POSTBUD_APP_PASSWORD", mailers_site.app_password)  # e.g. for the CLI
    options = options_for(mailers_site)
    del options["password"]
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    with pytest.raises(invalid_mailer()) as info:
        settings_for()
    assert str(info.value).startswith(
        f'No credentials for {mailers_site.username}: set MAILERS["default"]["OPTIONS"]'
        '["app_password"] to a Google app password'
    )


def test_email_settings_are_never_read(mailers_site: FakeGmail, settings: SettingsWrapper) -> None:
    # With MAILERS defined Django refuses to give an EMAIL_* value (AttributeError), and
    # postbud never asks: these would be wrong if it did.
    settings.EMAIL_HOST_USER = "someone.else@gmail.com"
    settings.EMAIL_PORT = "not a port"
    resolved = settings_for()
    assert (resolved.username, resolved.port) == (mailers_site.username, mailers_site.port)
    assert mail.send_mail("Still fine", "Body", None, ["a@example.com"]) == 1


def test_process_wide_postbud_keys_apply(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {"SPOOL": "", "ALERT_CAP": 3, "BACKGROUND": True}
    resolved = settings_for()
    assert (resolved.spool, resolved.alert_cap) == (None, 3)
    backend = mail.mailers["default"]
    assert backend.background
    assert mail.send_mail("Queued", "Body", None, ["a@example.com"]) == 1
    assert backend.mailer.flush(10)
    assert [m["Subject"] for m in mailers_site.messages] == ["Queued"]


def test_background_option_of_one_alias(
    two_aliases: tuple[FakeGmail, FakeGmail], settings: SettingsWrapper
) -> None:
    _, alerts = two_aliases
    settings.MAILERS["alerts"]["OPTIONS"]["background"] = True
    assert mail.mailers["alerts"].background
    assert not mail.mailers["default"].background
    alerts.delay(0.5, "DATA")
    assert mail.send_mail("Later", "Body", None, ["a@example.com"], using="alerts") == 1
    assert alerts.messages == []  # returned before the server answered
    assert mail.mailers["alerts"].mailer.flush(10)
    assert [m["Subject"] for m in alerts.messages] == ["Later"]


@GET_CONNECTION_DEPRECATED
@pytest.mark.filterwarnings(
    "ignore:The 'auth_user' and 'auth_password' arguments are deprecated:PendingDeprecationWarning",
    "ignore:The 'fail_silently' argument is deprecated:PendingDeprecationWarning",
)
def test_names_django_passes_under_mailers(
    mailers_site: FakeGmail, settings: SettingsWrapper, options_for: Options
) -> None:
    # send_mail(auth_user=, auth_password=) -> get_connection(username=, password=) ->
    # MAILERS["default"] with those as extra options (Django's _ignore_unknown_kwargs).
    options = options_for(mailers_site, password="wxyzwxyzwxyzwxyz")
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    count = mail.send_mail(
        "Auth args",
        "Body",
        None,
        ["a@example.com"],
        auth_user=mailers_site.username,
        auth_password=mailers_site.app_password,
    )
    assert count == 1
    assert mail.get_connection(fail_silently=True).fail_silently
    mailers_site.fail_next("MAIL", "421 4.7.0 Try again later, closing connection.")
    assert mail.send_mail("Down", "Body", None, ["a@example.com"], fail_silently=True) == 0


def test_the_shared_state_is_what_the_process_shares(
    mailers_site: FakeGmail, settings: SettingsWrapper, spool: Path
) -> None:
    settings.POSTBUD = {
        "SPOOL": str(spool),
        "STATE": "redis://127.0.0.1:1/0",
        "STATE_PASSWORD": "s3cret-state-pass",
        "MACHINES": 2,
    }
    resolved = settings_for()
    assert resolved.state == "redis://127.0.0.1:1/0"
    assert resolved.state_password is not None
    assert resolved.state_password.reveal() == "s3cret-state-pass"
    assert "s3cret-state-pass" not in repr(resolved)
