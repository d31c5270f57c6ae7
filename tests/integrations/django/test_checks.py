"""django_postbud's system checks: each id fires for its mistake, and none for a good site.

The settings checks say what the backend would raise, in its words: where a check
reports a configuration error, its message is compared with the error of
``settings_for`` for the same settings. A check never raises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from pytest_django import Settings as SettingsWrapper

import postbud
from django_postbud import checks
from django_postbud._settings import settings_for
from postbud.testing import FakeGmail

BACKEND = "django_postbud.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
HANDLER = "django_postbud.AdminAlertHandler"


def has_mailers() -> bool:
    """Whether this run's site is the MAILERS project (Django 6.1+)."""
    return django.VERSION >= (6, 1) and hasattr(django_settings, "MAILERS")


@pytest.fixture
def site(request: pytest.FixtureRequest) -> FakeGmail:
    """The site of this run's project (legacy EMAIL_* or MAILERS), good as it is."""
    fake: FakeGmail = request.getfixturevalue("mailers_site" if has_mailers() else "legacy_site")
    return fake


def postbud_messages(*, deploy: bool = True) -> list[CheckMessage]:
    """postbud's messages of a run of every registered check (Django's as well)."""
    found = run_checks(include_deployment_checks=deploy)
    return [m for m in found if str(m.id).startswith("postbud.")]


def ids(*, deploy: bool = True) -> list[str]:
    return sorted(str(m.id) for m in postbud_messages(deploy=deploy))


def only(check_id: str, *, deploy: bool = True) -> CheckMessage:
    """The one message of the run, which must have ``check_id``."""
    found = postbud_messages(deploy=deploy)
    assert [m.id for m in found] == [check_id], [str(m) for m in found]
    assert found[0].hint, "every postbud check says how to fix it"
    return found[0]


def backend_error(alias: str | None = None) -> str:
    """What the backend raises for the site's settings now."""
    with pytest.raises(postbud.ConfigurationError) as raised:
        settings_for(alias)
    return str(raised.value)


def alert_logging(**handler: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"mail_admins": {"class": HANDLER, **handler}},
    }


def set_logging(settings: SettingsWrapper, config: Any) -> None:
    """``settings.LOGGING = config`` for the checks to read, without configuring logging
    with it (Django 6.1 does on a change of LOGGING in tests; these configs need not
    work, or make a handler)."""
    settings.LOGGING_CONFIG = None
    settings.LOGGING = config


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """An OAuth2 authorized-user file (its content is read only when sending)."""
    path = tmp_path / "token.json"
    path.write_text('{"type": "authorized_user"}')
    return path


# -- every site -------------------------------------------------------------------------------


def test_the_checks_are_registered_with_the_app() -> None:
    from django.core.checks import registry

    assert checks.check_settings in registry.registry.get_checks()
    assert checks.check_deployment in registry.registry.get_checks(include_deployment_checks=True)
    assert checks.check_deployment not in registry.registry.get_checks()


def test_a_site_that_does_not_use_postbud_is_not_checked(settings: SettingsWrapper) -> None:
    if has_mailers():
        settings.MAILERS = {"default": {"BACKEND": LOCMEM, "OPTIONS": {}}}
    else:
        settings.EMAIL_BACKEND = LOCMEM
    settings.POSTBUD = {"USERNME": "typo@gmail.com"}  # would be postbud.E005
    assert ids() == []


def test_a_check_that_fails_unexpectedly_is_an_error_not_an_exception(
    site: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the lookup broke")

    monkeypatch.setattr(checks, "resolve", broken)
    message = only("postbud.E007")
    assert message.msg.endswith("RuntimeError: the lookup broke")
    monkeypatch.setattr(checks, "postbud_sites", broken)
    assert "postbud.E007" in ids()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTBUD", ["SPOOL", "/tmp/x"]),
        ("POSTBUD", {1: "a key that is no string"}),
        ("LOGGING", {"handlers": "nonsense"}),
        ("LOGGING", {"handlers": {"mail_admins": {"class": "no.such.Handler"}}}),
        ("LOGGING", {"handlers": {"mail_admins": {"class": HANDLER, "using": 3}}}),
        ("DEFAULT_FROM_EMAIL", None),
    ],
)
def test_a_bad_setting_never_raises_out_of_the_checks(
    site: FakeGmail, settings: SettingsWrapper, name: str, value: Any
) -> None:
    if name == "LOGGING":
        set_logging(settings, value)
    else:
        setattr(settings, name, value)
    found = postbud_messages()  # no exception
    assert all(m.id != "postbud.E007" for m in found), [str(m) for m in found]


def test_manage_py_check_fails_on_an_error_and_names_it(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    call_command("check", "--tag", "postbud")  # the good site passes
    settings.POSTBUD = {**settings.POSTBUD, "SPOL": "/tmp/typo.sqlite"}
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert "(postbud.E005)" in str(raised.value)
    assert 'Did you mean POSTBUD["SPOOL"]?' in str(raised.value)


def test_a_good_site_passes_every_check(site: FakeGmail) -> None:
    assert ids(deploy=True) == []


def test_unknown_postbud_keys_are_each_named_with_the_closest_key(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "EXIT_TIMOUT": 3, "backgrund": True}
    found = postbud_messages()
    assert [m.id for m in found] == ["postbud.E005", "postbud.E005"]
    assert [m.msg for m in found] == [
        'Unknown postbud setting POSTBUD["EXIT_TIMOUT"]. Did you mean POSTBUD["EXIT_TIMEOUT"]?',
        'Unknown postbud setting POSTBUD["backgrund"]. Did you mean POSTBUD["BACKGROUND"]?',
    ]
    assert found[0].obj == "POSTBUD"
    settings.POSTBUD = {**settings.POSTBUD, "backgrund": True}
    del settings.POSTBUD["EXIT_TIMOUT"]
    assert only("postbud.E005").msg == backend_error()  # the backend's own words


def test_background_with_an_in_memory_spool_warns(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "BACKGROUND": True}
    assert ids() == []  # a spool on disk: nothing lost on restart
    settings.POSTBUD = {**settings.POSTBUD, "SPOOL": ""}
    message = only("postbud.W003")
    assert "lost when the process stops or restarts" in message.msg
    assert 'POSTBUD["SPOOL"]' in str(message.hint)


STATE_PASSWORD = "s3cret-state-pass"


def test_several_machines_on_their_own_spools_warn(
    site: FakeGmail, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALLOWED_HOSTS = ["a.example.com", "b.example.com"]  # says nothing of machines
    assert ids() == []
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": 1}
    assert ids() == []
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": 3}
    message = only("postbud.W005")
    assert message.obj == "POSTBUD"
    assert message.msg == (
        'POSTBUD["MACHINES"] is 3 but the state postbud shares is each machine\'s own spool '
        "(no STATE): each machine then counts its own daily limit (together up to 3 × 500 "
        "recipients a day of one account; Gmail suspends sending for up to a day past the "
        "limit) and mails its own copy of each alert."
    )
    assert str(message.hint).startswith('Set POSTBUD["STATE"] = "redis://…"')
    assert "docs/several-machines.md" in str(message.hint)
    settings.POSTBUD = {**settings.POSTBUD, "STATE": "redis://redis.internal:6379/0"}
    assert ids() == []  # one store for every machine
    del settings.POSTBUD["STATE"]
    monkeypatch.setenv("POSTBUD_STATE", "redis://redis.internal:6379/0")
    assert ids() == []  # wherever the site sets it


def test_machines_is_known_and_checked_as_the_backend_reads_it(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "MACHINE": 2}
    assert only("postbud.E005").msg == (
        'Unknown postbud setting POSTBUD["MACHINE"]. Did you mean POSTBUD["MACHINES"]?'
    )
    del settings.POSTBUD["MACHINE"]
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": 0}
    message = only("postbud.E006")
    assert message.msg == backend_error()
    assert message.msg.startswith('POSTBUD["MACHINES"] must be a whole number >= 1')


def test_a_password_in_the_state_url_warns_without_showing_it(
    site: FakeGmail, settings: SettingsWrapper, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.POSTBUD = {
        **settings.POSTBUD,
        "STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:6379/0",
    }
    message = only("postbud.W006")
    assert message.obj == 'POSTBUD["STATE"]'
    assert message.msg.startswith('POSTBUD["STATE"] holds the Redis password: ')
    assert 'POSTBUD["STATE_PASSWORD"]' in str(message.hint)
    call_command("check", "--tag", "postbud")  # a warning: manage.py check passes
    printed = capsys.readouterr()
    assert "(postbud.W006)" in printed.err + printed.out
    for text in (message.msg, str(message.hint), printed.out, printed.err):
        assert STATE_PASSWORD not in text
    # The password apart: accepted, and hidden by Django's own filter of settings.
    settings.POSTBUD = {
        **settings.POSTBUD,
        "STATE": "redis://127.0.0.1:6379/0",
        "STATE_PASSWORD": STATE_PASSWORD,
    }
    assert ids() == []


def test_a_bad_state_url_is_an_error_without_its_password(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {
        **settings.POSTBUD,
        "STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:99999/0",
    }
    found = postbud_messages()
    assert [m.id for m in found] == ["postbud.W006", "postbud.E006"]  # and it holds one
    assert found[1].msg == backend_error()
    assert "'redis://:********@127.0.0.1:99999/0'" in found[1].msg
    assert all(STATE_PASSWORD not in f"{m.msg} {m.hint}" for m in found)


def test_a_from_address_that_is_not_the_account_warns(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.DEFAULT_FROM_EMAIL = f"The Shop <{site.username.upper()}>"
    assert ids() == []  # a display name, another case: the same account
    settings.DEFAULT_FROM_EMAIL = "shop@example.com"
    message = only("postbud.W002")
    assert message.obj == "DEFAULT_FROM_EMAIL"
    assert message.msg == (
        f"DEFAULT_FROM_EMAIL 'shop@example.com' is not the account postbud logs in as "
        f"({site.username}): Gmail sends such mail From {site.username} unless the address "
        "is a verified 'Send mail as' alias of the account."
    )
    assert "SILENCED_SYSTEM_CHECKS = ['postbud.W002']" in str(message.hint)
    settings.SILENCED_SYSTEM_CHECKS = ["postbud.W002"]  # what manage.py check then omits
    assert all(m.is_silenced() for m in postbud_messages())


def test_server_email_is_checked_when_the_site_mails_admins(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.SERVER_EMAIL = "root@localhost"
    assert only("postbud.W002").obj == "SERVER_EMAIL"
    settings.ADMINS = []
    settings.MANAGERS = []
    assert ids() == []  # no mail_admins, no AdminAlertHandler: nobody sends from it
    set_logging(settings, alert_logging())
    assert only("postbud.W002").obj == "SERVER_EMAIL"


def test_an_alert_handler_alone_makes_postbud_in_use(settings: SettingsWrapper) -> None:
    if has_mailers():
        settings.MAILERS = {"default": {"BACKEND": LOCMEM}}
    else:
        settings.EMAIL_BACKEND = LOCMEM
    settings.POSTBUD = {"ALERT_CAPP": 5}
    assert ids() == []
    set_logging(settings, alert_logging())
    assert only("postbud.E005").msg.endswith('Did you mean POSTBUD["ALERT_CAP"]?')


def test_an_alert_handler_with_settings_of_its_own_is_checked_with_them(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    set_logging(settings, alert_logging(alert_cooldown="ten minutes"))
    message = only("postbud.E006")
    assert message.obj == "LOGGING['handlers']['mail_admins']"
    assert "must be a number, got 'ten minutes'" in message.msg


# -- the site without MAILERS (EMAIL_BACKEND) --------------------------------------------------


def test_no_credentials(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    del settings.EMAIL_HOST_PASSWORD
    message = only("postbud.E001")
    assert message.msg == backend_error()
    assert message.msg.startswith(f"No credentials for {legacy_site.username}: set ")
    assert message.obj == "EMAIL_BACKEND"
    del settings.EMAIL_HOST_USER  # no account at all
    assert only("postbud.E001").msg == backend_error()


def test_two_kinds_of_credentials(
    legacy_site: FakeGmail, settings: SettingsWrapper, token_file: Path
) -> None:
    settings.POSTBUD = {
        **settings.POSTBUD,
        "USERNAME": legacy_site.username,
        "APP_PASSWORD": legacy_site.app_password,
        "OAUTH_TOKEN_FILE": str(token_file),
    }
    message = only("postbud.E002")
    assert message.msg == backend_error()
    assert message.msg.startswith("Two kinds of credentials are set (")


def test_ssl_and_starttls_both_on(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    settings.EMAIL_USE_TLS = True
    message = only("postbud.E003")
    assert message.msg == backend_error()
    assert message.msg.startswith("EMAIL_USE_SSL and EMAIL_USE_TLS are both True")


@pytest.mark.parametrize(
    ("port", "flag"), [(587, "EMAIL_USE_SSL"), (465, "EMAIL_USE_TLS")], ids=["587+ssl", "465+tls"]
)
def test_a_port_of_the_other_mode(
    legacy_site: FakeGmail, settings: SettingsWrapper, port: int, flag: str
) -> None:
    del settings.EMAIL_USE_SSL
    setattr(settings, flag, True)
    settings.EMAIL_PORT = port
    message = only("postbud.E004")
    assert message.msg == backend_error()
    assert message.msg.startswith(f"EMAIL_PORT {port} is Gmail's ")


@pytest.mark.parametrize(
    ("postbud_settings", "words"),
    [
        ({"TIMEOUT": "soon"}, 'POSTBUD["TIMEOUT"] must be a number'),
        ({"CA_FILE": "/no/such/ca.pem"}, "does not exist: point it at a PEM file"),
        ({"BACKGROUND": "yes"}, 'POSTBUD["BACKGROUND"] must be True or False'),
    ],
)
def test_another_configuration_error_is_an_error_with_its_text(
    legacy_site: FakeGmail, settings: SettingsWrapper, postbud_settings: Any, words: str
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, **postbud_settings}
    message = only("postbud.E006")
    assert message.msg == backend_error()
    assert words in message.msg


def test_postbud_must_be_a_dict(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    settings.POSTBUD = [("SPOOL", "/tmp/x")]
    assert only("postbud.E006").msg == "settings.POSTBUD must be a dict, got list."


def test_a_client_certificate_warns(legacy_site: FakeGmail, settings: SettingsWrapper) -> None:
    settings.EMAIL_SSL_CERTFILE = "/etc/ssl/client.pem"
    message = only("postbud.W004")
    assert message.msg.startswith("EMAIL_SSL_CERTFILE is set: in Django that is a client")
    assert 'POSTBUD["CA_FILE"]' in str(message.hint)
    settings.EMAIL_SSL_KEYFILE = "/etc/ssl/client.key"
    assert "EMAIL_SSL_CERTFILE and EMAIL_SSL_KEYFILE are set" in only("postbud.W004").msg


def test_a_missing_token_file_is_a_deploy_warning(
    legacy_site: FakeGmail, settings: SettingsWrapper, tmp_path: Path
) -> None:
    del settings.EMAIL_HOST_PASSWORD
    missing = tmp_path / "secrets" / "token.json"
    settings.POSTBUD = {
        **settings.POSTBUD,
        "USERNAME": legacy_site.username,  # the credentials come from one place
        "OAUTH_TOKEN_FILE": str(missing),
    }
    assert ids(deploy=False) == []  # a container is built before its secrets are mounted
    message = only("postbud.W001")
    assert message.msg == backend_error()
    assert f"{str(missing)!r} does not exist" in message.msg
    call_command("check")  # passes: only --deploy warns
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", "--deploy", "--tag", "postbud", "--fail-level", "WARNING")
    assert "(postbud.W001)" in str(raised.value)


def test_an_unreadable_token_file_is_a_deploy_warning(
    legacy_site: FakeGmail,
    settings: SettingsWrapper,
    token_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    del settings.EMAIL_HOST_PASSWORD
    settings.POSTBUD = {
        **settings.POSTBUD,
        "USERNAME": legacy_site.username,
        "OAUTH_TOKEN_FILE": str(token_file),
    }
    assert ids() == []

    def refused(path: str, mode: str = "r") -> Any:
        raise PermissionError(13, "Permission denied", path)

    # Root reads every file whatever its mode (these tests may run as root): the check's
    # open() is made to fail as it does for another user.
    monkeypatch.setattr(checks, "open", refused, raising=False)
    message = only("postbud.W001")
    assert (
        message.msg
        == f"The oauth_token_file {str(token_file)!r} cannot be read: Permission denied."
    )
    assert ids(deploy=False) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_token_file_for_real(
    legacy_site: FakeGmail, settings: SettingsWrapper, token_file: Path
) -> None:
    del settings.EMAIL_HOST_PASSWORD
    settings.POSTBUD = {
        **settings.POSTBUD,
        "USERNAME": legacy_site.username,
        "OAUTH_TOKEN_FILE": str(token_file),
    }
    token_file.chmod(0)
    try:
        assert "cannot be read" in only("postbud.W001").msg
    finally:
        token_file.chmod(0o600)


# -- the MAILERS site (Django 6.1) ----------------------------------------------------------


def alias_options(settings: SettingsWrapper, alias: str = "default") -> dict[str, Any]:
    options: dict[str, Any] = settings.MAILERS[alias]["OPTIONS"]
    return options


def with_options(settings: SettingsWrapper, **changes: Any) -> None:
    """MAILERS["default"] with OPTIONS changed (None removes one)."""
    options = {**alias_options(settings), **changes}
    options = {k: v for k, v in options.items() if v is not None}
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}


def test_mailers_no_credentials(mailers_site: FakeGmail, settings: SettingsWrapper) -> None:
    with_options(settings, password=None)
    message = only("postbud.E001")
    assert message.msg == backend_error("default")
    assert message.obj == "MAILERS['default']"


def test_mailers_two_kinds_of_credentials(
    mailers_site: FakeGmail, settings: SettingsWrapper, token_file: Path
) -> None:
    with_options(settings, oauth_token_file=str(token_file))
    assert only("postbud.E002").msg == backend_error("default")


def test_mailers_ssl_and_starttls_both_on(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    with_options(settings, use_ssl=True, use_tls=True)
    assert only("postbud.E003").msg == backend_error("default")


def test_mailers_a_port_of_the_other_mode(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    with_options(settings, port=587)
    message = only("postbud.E004")
    assert message.msg == backend_error("default")
    assert "587 is Gmail's 'starttls' port" in message.msg


def test_mailers_an_unknown_option(mailers_site: FakeGmail, settings: SettingsWrapper) -> None:
    with_options(settings, pasword="x", password=None)
    message = only("postbud.E005")
    assert message.msg == backend_error("default")
    assert "Did you mean 'password'?" in message.msg


def test_mailers_postbud_with_an_account_is_an_error_of_every_alias(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    options = alias_options(settings)
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND, "OPTIONS": options},
        "bulk": {"BACKEND": BACKEND, "OPTIONS": options},
    }
    settings.POSTBUD = {**settings.POSTBUD, "USERNAME": mailers_site.username}
    found = postbud_messages()
    assert [(m.id, m.obj) for m in found] == [
        ("postbud.E006", "MAILERS['default']"),
        ("postbud.E006", "MAILERS['bulk']"),
    ]
    assert [m.msg for m in found] == [backend_error("default"), backend_error("bulk")]
    assert "is not read when settings.MAILERS is defined" in found[0].msg


def test_mailers_only_postbud_aliases_are_checked_each_by_name(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    options = alias_options(settings)
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND, "OPTIONS": options},
        "tests": {"BACKEND": LOCMEM, "OPTIONS": {"port": "not ours to check"}},
        "bulk": {"BACKEND": BACKEND, "OPTIONS": {**options, "port": 587}},
    }
    message = only("postbud.E004")
    assert message.obj == "MAILERS['bulk']"
    assert message.msg == backend_error("bulk")


def test_mailers_a_missing_token_file_leaves_the_rest_checked(
    mailers_site: FakeGmail, settings: SettingsWrapper, tmp_path: Path
) -> None:
    missing = tmp_path / "token.json"
    with_options(settings, password=None, oauth_token_file=str(missing))
    assert ids() == ["postbud.W001"]
    assert ids(deploy=False) == []
    with_options(settings, port=587)  # the rest is checked all the same
    assert ids(deploy=False) == ["postbud.E004"]
    assert ids() == ["postbud.E004", "postbud.W001"]


def test_mailers_background_with_an_in_memory_spool(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    with_options(settings, background=True)
    assert ids() == []
    settings.POSTBUD = {"SPOOL": ""}
    assert only("postbud.W003").obj == "MAILERS['default']"


def test_mailers_several_machines_and_the_state(
    mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    settings.POSTBUD = {**settings.POSTBUD, "MACHINES": 2}  # the site's, under MAILERS too
    assert only("postbud.W005").obj == "POSTBUD"
    settings.POSTBUD = {
        **settings.POSTBUD,
        "STATE": "redis://127.0.0.1:6379/0",
        "STATE_PASSWORD": STATE_PASSWORD,
    }
    assert ids() == []  # STATE and STATE_PASSWORD are what the process shares
    with_options(settings, state=f"redis://:{STATE_PASSWORD}@127.0.0.1:6379/0")
    message = only("postbud.W006")
    assert message.obj == 'MAILERS["default"]["OPTIONS"]["state"]'
    assert STATE_PASSWORD not in f"{message.msg} {message.hint}"
