"""``manage.py postbud_check`` and ``manage.py postbud_outbox`` against FakeGmail.

The site's mail settings are FakeGmail's (the ``legacy_site`` / ``mailers_site``
fixtures of conftest.py), so the commands find their settings where the backend does.
postbud_check prints ``postbud check``'s steps; postbud_outbox is ``postbud outbox``
with the site's settings (same output, same exit codes, same read-only rules).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from pytest_django import Settings as SettingsWrapper

import postbud
from django_postbud._settings import settings_for
from postbud.testing import FakeGmail, replies

BACKEND = "django_postbud.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
MAILERS_API = django.VERSION >= (6, 1)
WRONG_PASSWORD = "zzzz yyyy xxxx wwww"  # 16 letters: the password's shape is fine


def has_mailers() -> bool:
    return MAILERS_API and hasattr(django_settings, "MAILERS")


@pytest.fixture
def site(request: pytest.FixtureRequest) -> FakeGmail:
    """The site of this run's project (legacy EMAIL_* or MAILERS) on FakeGmail."""
    fake: FakeGmail = request.getfixturevalue("mailers_site" if has_mailers() else "legacy_site")
    return fake


def run(command: str, *args: str) -> tuple[str, str]:
    """Run a management command; its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failing(command: str, *args: str) -> tuple[CommandError, str, str]:
    """Run a command that must fail; the error, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(command, *args, stdout=out, stderr=err)
    return raised.value, out.getvalue(), err.getvalue()


def set_password(settings: SettingsWrapper, password: str | None) -> None:
    """The site's app password (None: none at all), the way this project sets it."""
    if has_mailers():
        options = dict(settings.MAILERS["default"]["OPTIONS"])
        options.pop("password")
        if password is not None:
            options["password"] = password
        settings.MAILERS = {**settings.MAILERS, "default": {"BACKEND": BACKEND, "OPTIONS": options}}
    elif password is None:
        del settings.EMAIL_HOST_PASSWORD
    else:
        settings.EMAIL_HOST_PASSWORD = password


def steps(output: str) -> list[tuple[str, str]]:
    """(status, step) of each step line of postbud check's output."""
    found = []
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "warn", "FAIL"):
            found.append((status, rest.split()[0]))
    return found


# -- postbud_check --------------------------------------------------------------------------


def test_check_walks_every_step_and_sends_nothing(site: FakeGmail) -> None:
    out, err = run("postbud_check")
    assert steps(out) == [
        ("ok", name) for name in ("settings", "dns", "tcp", "tls", "ehlo", "login", "quota")
    ]
    assert f"ok   settings  {site.username} via 127.0.0.1:{site.port} (ssl)" in out
    assert out.endswith("All checks passed.\n")
    assert err == ""
    assert site.messages == []


def test_check_send_sends_one_test_message(site: FakeGmail) -> None:
    out, _ = run("postbud_check", "--send", "you@example.com")
    assert ("ok", "send") in steps(out)
    assert [m.recipients for m in site.messages] == [("you@example.com",)]


def test_a_refused_login_exits_1_with_the_fix(site: FakeGmail, settings: SettingsWrapper) -> None:
    set_password(settings, WRONG_PASSWORD)
    error, out, err = failing("postbud_check")
    assert error.returncode == 1
    assert steps(out)[-1] == ("FAIL", "login")
    fix = next(line for line in out.splitlines() if line.lstrip().startswith("fix: "))
    assert str(error) == fix.strip().removeprefix("fix: ")
    assert "app password" in str(error)
    assert "Traceback" not in err
    assert WRONG_PASSWORD not in out + err + str(error)


def test_debug_prints_the_traceback_of_the_failed_step(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    set_password(settings, WRONG_PASSWORD)
    _, _, err = failing("postbud_check", "--debug")
    assert "Traceback (most recent call last):" in err
    assert "AuthenticationError" in err
    assert WRONG_PASSWORD not in err


def test_a_configuration_mistake_exits_2(site: FakeGmail, settings: SettingsWrapper) -> None:
    set_password(settings, None)
    error, out, _ = failing("postbud_check")
    assert error.returncode == 2
    assert steps(out) == [("FAIL", "settings")]
    assert str(error).startswith(f"No credentials for {site.username}: set ")
    assert str(error) in out  # the step says it too


def test_the_system_checks_do_not_stop_the_commands(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    set_password(settings, None)  # postbud.E001: manage.py check fails
    with pytest.raises(CommandError):
        call_command("check", "--tag", "postbud")
    error, _, _ = failing("postbud_check")
    assert error.returncode == 2  # its own diagnosis, not Django's SystemCheckError


@pytest.mark.skipif(MAILERS_API, reason="Django 6.1 has --using")
def test_using_needs_django_6_1(site: FakeGmail) -> None:
    with pytest.raises(CommandError, match="--using"):
        call_command("postbud_check", "--using", "default")


def test_the_commands_exist_only_with_the_app(settings: SettingsWrapper) -> None:
    assert {"postbud_check", "postbud_outbox"} <= set(get_commands())
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_postbud"]
    assert "postbud_check" not in get_commands()
    for command in ("postbud_check", "postbud_outbox"):
        with pytest.raises(CommandError, match="Unknown command"):
            call_command(command)


@pytest.fixture
def bulk(mailers_site: FakeGmail, settings: SettingsWrapper) -> str:
    """A second postbud alias, "bulk", as "default" was (and "tests", Django's locmem)."""
    mailers = dict(settings.MAILERS)
    options = dict(mailers["default"]["OPTIONS"])
    mailers["bulk"] = {"BACKEND": BACKEND, "OPTIONS": options}
    mailers["tests"] = {"BACKEND": LOCMEM}
    settings.MAILERS = mailers
    return "bulk"


def test_mailers_using_checks_that_alias(
    bulk: str, mailers_site: FakeGmail, settings: SettingsWrapper
) -> None:
    set_password(settings, None)  # the default alias is broken, bulk is not
    out, _ = run("postbud_check", "--using", bulk)
    assert out.endswith("All checks passed.\n")
    error, _, _ = failing("postbud_check", "--using", "nope")
    assert error.returncode == 2
    assert "'nope' is not configured in settings.MAILERS" in str(error)
    error, _, _ = failing("postbud_check", "--using", "tests")
    assert error.returncode == 2
    assert str(error) == (
        f"MAILERS['tests'] sends with {LOCMEM}, not django_postbud.EmailBackend: "
        "name a postbud mailer with --using."
    )


# -- postbud_outbox -----------------------------------------------------------------------


def spool_of_site() -> Path:
    spool = settings_for("default" if has_mailers() else None).spool
    assert spool is not None
    return Path(spool)


def keep_one(site: FakeGmail, **changes: Any) -> None:
    """One message kept in the site's spool: dead (the server refuses its recipient) or,
    with ``port=`` a closed port, queued for a later try."""
    settings = settings_for("default" if has_mailers() else None)
    if "port" not in changes:
        site.fail_next("RCPT", replies.BAD_RECIPIENT)
    mailer = postbud.Mailer(settings.replace(**changes))
    try:
        mailer.submit("nobody@example.com", "Kept", "kept in the spool")
        # Dead at once; or tried (refused at once) and waiting for its next try.
        mailer.flush(3 if "port" not in changes else 0.5)
    finally:
        mailer.close(timeout=0)


def test_outbox_status_of_a_site_that_never_kept_mail_creates_nothing(site: FakeGmail) -> None:
    out, _ = run("postbud_outbox", "status")
    spool = spool_of_site()
    assert f"spool:      {spool} (no file yet: nothing was ever kept)" in out
    assert f"account:    {site.username}" in out
    assert "queued:     0" in out
    assert not spool.exists()
    out, _ = run("postbud_outbox", "list")
    assert out == f"The spool has no mail of {site.username}: nothing queued, no dead letters.\n"
    assert not spool.exists()


def test_outbox_status_and_list_send_nothing_that_waits(site: FakeGmail) -> None:
    keep_one(site, port=1)  # nothing listens there: the message waits for a retry
    out, _ = run("postbud_outbox", "status")
    assert "queued:     1" in out
    out, _ = run("postbud_outbox", "list")
    assert "queued" in out
    assert "to nobody@example.com  'Kept'" in out
    assert site.messages == []  # status and list only read
    out, err = run("postbud_outbox", "retry")  # retry sends what waits, first
    assert out == "0 dead letter(s) back in the queue.\n"
    assert "1 of 1 message(s) left in the spool by an earlier run went out" in err
    assert [m.recipients for m in site.messages] == [("nobody@example.com",)]


def test_outbox_a_dead_letter_is_listed_retried_and_purged(site: FakeGmail) -> None:
    keep_one(site)
    out, _ = run("postbud_outbox", "list")
    assert "  dead  " in out
    assert "553" in out  # the server's reply, as the reason
    row = int(out.split()[0])
    out, _ = run("postbud_outbox", "status")
    assert "dead:       1" in out

    error, _, _ = failing("postbud_outbox", "purge", str(row + 1))
    assert error.returncode == 1
    assert str(error) == f"no message {row + 1} in the spool (postbud outbox list shows the ids)"
    assert "  dead  " in run("postbud_outbox", "list")[0]  # a wrong id deletes nothing

    site.fail_next("RCPT", replies.BAD_RECIPIENT)
    error, out, _ = failing("postbud_outbox", "retry", str(row))
    assert out == "1 dead letter(s) back in the queue.\n"
    assert error.returncode == 1
    assert f"{row} failed again: The server refused the recipients: 553 5.1.3 " in str(error)

    out, _ = run("postbud_outbox", "purge", str(row))
    assert out == "1 dead letter(s) deleted.\n"
    assert run("postbud_outbox", "list")[0].startswith("The spool has no mail of ")


def test_outbox_retry_sends_a_dead_letter(site: FakeGmail) -> None:
    keep_one(site)
    out, _ = run("postbud_outbox", "retry")
    assert out == "1 dead letter(s) back in the queue.\n"
    assert [m.recipients for m in site.messages] == [("nobody@example.com",)]


def test_outbox_usage_and_configuration_mistakes_exit_2(
    site: FakeGmail, settings: SettingsWrapper
) -> None:
    error, _, _ = failing("postbud_outbox", "status", "3")
    assert (error.returncode, str(error)) == (
        2,
        "outbox status takes no IDs (they are for retry and purge).",
    )
    settings.POSTBUD = {**settings.POSTBUD, "SPOOL": ""}
    error, _, _ = failing("postbud_outbox", "status")
    assert error.returncode == 2
    assert str(error).startswith("there is no spool")
    set_password(settings, None)
    error, _, _ = failing("postbud_outbox", "list")
    assert error.returncode == 2
    assert str(error).startswith(f"No credentials for {site.username}")


def test_mailers_outbox_using(bulk: str, mailers_site: FakeGmail) -> None:
    out, _ = run("postbud_outbox", "status", "--using", bulk)
    assert f"account:    {mailers_site.username}" in out
    error, _, _ = failing("postbud_outbox", "status", "--using", "tests")
    assert error.returncode == 2
