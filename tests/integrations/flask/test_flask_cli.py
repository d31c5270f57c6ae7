"""``flask postbud check``, ``send-test`` and ``outbox`` through ``app.test_cli_runner()``.

The apps are ``flask_testapp``'s, configured for FakeGmail over real TLS (``gmail_app``);
the spool is the test's ``POSTBUD_SPOOL`` (``postbud_spool``). The commands must behave
like the command line: its steps and words, exit 0/1/2/75, ``postbud: ...`` lines on
stderr, no traceback, a config mistake naming the key the app wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

import postbud
from flask_postbud import Postbud
from postbud.testing import FakeGmail, replies

AppMaker = Callable[..., Flask]
Config = Callable[..., dict[str, Any]]
WRONG_PASSWORD = "zzzz yyyy xxxx wwww"  # 16 letters: the password's shape is fine
WALK = ("settings", "dns", "tcp", "tls", "ehlo", "login", "quota")


def flask(app: Flask, *args: str) -> Result:
    """``flask postbud ARGS`` for ``app``; exceptions become the exit status, as in a shell."""
    result = app.test_cli_runner().invoke(args=["postbud", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def steps(output: str) -> list[tuple[str, str]]:
    """(status, step) of each step line of the check's output."""
    found = []
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "warn", "FAIL"):
            found.append((status, rest.split()[0]))
    return found


def keep_dead_letter(fake: FakeGmail, spool: Path) -> None:
    """One dead letter in the app's spool: the server refuses its recipient for good."""
    fake.fail_next("RCPT", replies.BAD_RECIPIENT)
    mailer = postbud.Mailer(fake.settings(spool=str(spool)))
    try:
        mailer.submit("nobody@example.com", "Kept", "kept in the spool")
        mailer.flush(3)
    finally:
        mailer.close(timeout=0)


# -- help -------------------------------------------------------------------------------


def test_the_group_and_each_command_have_help(gmail_app: Flask) -> None:
    result = flask(gmail_app, "--help")
    assert result.exit_code == 0
    for command in ("check", "send-test", "outbox"):
        assert command in result.stdout
    for command, words in [
        ("check", "--send TO"),
        ("send-test", "--to ADDRESS"),
        ("outbox", "status  counts, the oldest message"),
    ]:
        helped = flask(gmail_app, command, "--help")
        assert helped.exit_code == 0
        assert words in helped.stdout
        assert "Exit status: 0" in helped.stdout


# -- check ------------------------------------------------------------------------------


def test_check_walks_every_step_and_sends_nothing(gmail_app: Flask, fake_gmail: FakeGmail) -> None:
    result = flask(gmail_app, "check")
    assert result.exit_code == 0
    assert steps(result.stdout) == [("ok", name) for name in WALK]
    assert f"ok   settings  {fake_gmail.username} via 127.0.0.1:{fake_gmail.port} (ssl)" in (
        result.stdout
    )
    assert result.stdout.endswith("All checks passed.\n")
    assert result.stderr == ""
    assert fake_gmail.messages == []


def test_check_send_sends_one_test_message(gmail_app: Flask, fake_gmail: FakeGmail) -> None:
    result = flask(gmail_app, "check", "--send", "you@example.com")
    assert result.exit_code == 0
    assert ("ok", "send") in steps(result.stdout)
    assert [m.recipients for m in fake_gmail.messages] == [("you@example.com",)]


def test_check_with_a_wrong_password_exits_1_with_the_fix(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app(config_for(fake_gmail, app_password=WRONG_PASSWORD))
    result = flask(app, "check")
    assert result.exit_code == 1
    assert steps(result.stdout)[-1] == ("FAIL", "login")
    fix = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("fix: "))
    assert "app password" in fix
    assert result.stderr == f"postbud: {fix.strip().removeprefix('fix: ')}\n"
    assert "Traceback" not in result.output
    assert WRONG_PASSWORD not in result.output
    # The refusal paused the logins: the advice to go on is this app's command.
    again = flask(app, "check")
    assert again.exit_code == 1
    assert "'flask postbud outbox retry'" in again.stderr
    status = flask(app, "outbox", "status")
    assert "then run 'flask postbud outbox retry'" in status.stdout
    assert "'postbud outbox" not in again.output + status.output


def test_check_debug_prints_the_traceback_of_the_failed_step(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app(config_for(fake_gmail, app_password=WRONG_PASSWORD))
    result = flask(app, "check", "--debug")
    assert result.exit_code == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert "AuthenticationError" in result.stderr
    assert WRONG_PASSWORD not in result.output


def test_check_with_a_typo_in_a_key_exits_2_naming_it(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app()  # no credentials yet: the factory fills the config after init_app
    app.config.update(config_for(fake_gmail))
    app.config["POSTBUD_SECURTY"] = "ssl"
    result = flask(app, "check")
    assert result.exit_code == 2
    assert steps(result.stdout) == [("FAIL", "settings")]
    assert result.stderr.startswith("postbud: ")
    assert "POSTBUD_SECURTY" in result.stderr
    assert "Did you mean POSTBUD_SECURITY?" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_check_a_starttls_client_on_the_tls_port_is_told_the_key(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app(config_for(fake_gmail, security="starttls"))
    result = flask(app, "check")
    assert result.exit_code == 1
    assert steps(result.stdout)[-1] == ("FAIL", "tls")
    assert result.stderr.endswith("check POSTBUD_SECURITY='ssl'.\n")  # not security='ssl'


def test_check_under_testing_says_mail_is_suppressed_and_sends_nothing(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app({**config_for(fake_gmail), "TESTING": True})
    result = flask(app, "check", "--send", "you@example.com")
    assert result.exit_code == 0
    assert steps(result.stdout) == [
        ("warn", "suppress"),
        *(("ok", name) for name in WALK),
        ("warn", "send"),
    ]
    assert "(TESTING is True)" in result.stdout
    assert fake_gmail.messages == []


# -- send-test --------------------------------------------------------------------------


def test_send_test_delivers_and_says_where(gmail_app: Flask, fake_gmail: FakeGmail) -> None:
    result = flask(gmail_app, "send-test", "--to", "you@example.com")
    assert result.exit_code == 0, result.output
    [received] = fake_gmail.messages
    assert received.recipients == ("you@example.com",)
    assert received.message["Subject"] == f"Test mail from the Flask app {gmail_app.name}"
    assert fake_gmail.username in received.message["From"]
    body = received.message.get_body(("plain",))
    assert body is not None and "flask postbud send-test" in body.get_content()
    assert result.stdout == (
        f"Sent the test mail to you@example.com from {fake_gmail.username}: "
        f"127.0.0.1:{fake_gmail.port} (ssl) accepted it as {received.message['Message-ID']}.\n"
    )


def test_send_test_under_suppression_sends_nothing_and_exits_0(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    gmail_app.config["MAIL_SUPPRESS_SEND"] = True
    with ext.record_messages() as outbox:
        result = flask(gmail_app, "send-test", "--to", "you@example.com")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == (
        "postbud: nothing was sent to you@example.com: sending is suppressed for this app "
        "(MAIL_SUPPRESS_SEND is True); set POSTBUD_SUPPRESS_SEND = False to send.\n"
    )
    assert fake_gmail.connections == 0
    assert [m.recipients for m in outbox] == [["you@example.com"]]  # built, as the app's mail


def test_send_test_with_a_wrong_password_exits_1(
    make_app: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make_app(config_for(fake_gmail, app_password=WRONG_PASSWORD))
    result = flask(app, "send-test", "--to", "you@example.com")
    assert result.exit_code == 1
    assert result.stderr.startswith("postbud: ")
    assert "app password" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert WRONG_PASSWORD not in result.output
    assert fake_gmail.messages == []


def test_send_test_mistakes_exit_2_naming_the_option_or_key(
    make_app: AppMaker, gmail_app: Flask, config_for: Config, fake_gmail: FakeGmail
) -> None:
    result = flask(gmail_app, "send-test", "--to", "not an address")
    assert result.exit_code == 2
    assert result.stderr.startswith("postbud: --to: ")
    assert "is not a valid email address" in result.stderr
    app = make_app()
    app.config.update(config_for(fake_gmail, port="46S"))
    result = flask(app, "send-test", "--to", "you@example.com")
    assert result.exit_code == 2
    assert result.stderr.startswith("postbud: POSTBUD_PORT ")
    assert "Traceback" not in result.output
    assert fake_gmail.messages == []


def test_send_test_without_to_is_a_usage_error(gmail_app: Flask) -> None:
    result = flask(gmail_app, "send-test")
    assert result.exit_code == 2
    assert "Missing option '--to'" in result.stderr


# -- outbox -----------------------------------------------------------------------------


def test_outbox_status_of_an_app_that_never_kept_mail_creates_nothing(
    gmail_app: Flask, fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    result = flask(gmail_app, "outbox", "status")
    assert result.exit_code == 0
    assert f"spool:      {postbud_spool} (no file yet: nothing was ever kept)" in result.stdout
    assert f"account:    {fake_gmail.username}" in result.stdout
    assert not postbud_spool.exists()


def test_outbox_a_dead_letter_is_listed_retried_and_purged(
    gmail_app: Flask, fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    keep_dead_letter(fake_gmail, postbud_spool)
    listed = flask(gmail_app, "outbox", "list")
    assert listed.exit_code == 0
    assert "  dead  " in listed.stdout
    assert "553" in listed.stdout  # the server's reply, as the reason
    row = int(listed.stdout.split()[0])
    status = flask(gmail_app, "outbox", "status")
    assert "dead:       1" in status.stdout

    wrong = flask(gmail_app, "outbox", "purge", str(row + 1))
    assert wrong.exit_code == 1
    assert wrong.stderr == (
        f"postbud: no message {row + 1} in the spool (flask postbud outbox list shows the ids)\n"
    )
    assert "  dead  " in flask(gmail_app, "outbox", "list").stdout  # nothing deleted

    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT)
    again = flask(gmail_app, "outbox", "retry", str(row))
    assert again.exit_code == 1
    assert again.stdout == "1 dead letter(s) back in the queue.\n"
    assert f"{row} failed again: The server refused the recipients: 553 5.1.3 " in again.stderr

    purged = flask(gmail_app, "outbox", "purge", str(row))
    assert (purged.exit_code, purged.stdout) == (0, "1 dead letter(s) deleted.\n")
    assert flask(gmail_app, "outbox", "list").stdout.startswith("The spool has no mail of ")


def test_outbox_retry_sends_a_dead_letter(
    gmail_app: Flask, fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    keep_dead_letter(fake_gmail, postbud_spool)
    result = flask(gmail_app, "outbox", "retry")
    assert (result.exit_code, result.stdout) == (0, "1 dead letter(s) back in the queue.\n")
    assert [m.recipients for m in fake_gmail.messages] == [("nobody@example.com",)]


def test_outbox_retry_under_suppression_sends_nothing(
    gmail_app: Flask, fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    keep_dead_letter(fake_gmail, postbud_spool)
    gmail_app.config["TESTING"] = True
    result = flask(gmail_app, "outbox", "retry")
    assert result.exit_code == 0
    assert result.stderr.startswith("postbud: nothing was retried: sending is suppressed")
    assert fake_gmail.messages == []
    assert "  dead  " in flask(gmail_app, "outbox", "list").stdout  # still there


def test_outbox_usage_and_configuration_mistakes_exit_2(
    make_app: AppMaker, gmail_app: Flask, config_for: Config, fake_gmail: FakeGmail
) -> None:
    result = flask(gmail_app, "outbox", "status", "3")
    assert (result.exit_code, result.stderr) == (
        2,
        "postbud: outbox status takes no IDs (they are for retry and purge).\n",
    )
    assert flask(gmail_app, "outbox", "resend").exit_code == 2  # not an action
    app = make_app()
    app.config.update(config_for(fake_gmail, app_password=None))
    result = flask(app, "outbox", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"postbud: No credentials for {fake_gmail.username}: set ")
    assert "POSTBUD_APP_PASSWORD" in result.stderr


@pytest.mark.parametrize("value", ["yes", 1])
def test_a_suppression_key_that_is_not_a_bool_exits_2(gmail_app: Flask, value: object) -> None:
    gmail_app.config["POSTBUD_SUPPRESS_SEND"] = value
    result = flask(gmail_app, "send-test", "--to", "you@example.com")
    assert result.exit_code == 2
    assert result.stderr == (
        f"postbud: POSTBUD_SUPPRESS_SEND must be True or False, got {value!r}.\n"
    )
