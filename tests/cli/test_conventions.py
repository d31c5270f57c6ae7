"""Issue 17: the `postbud` command line follows the conventions of git, pip and curl.

Errors name what the user typed (`--port`, or `POSTBUD_PORT=` for the environment); a
secret given as an option is refused with where it goes instead, never echoed; every
line starts with "postbud: " once and Gmail's multi-line replies are joined; `outbox`
says which actions exist, refuses ids that are not in the spool (exit 1) and its
`status` and `list` neither create, write nor send anything; the help of each command
shows only its options, each with a text, and an example.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from clitools import clean_env, postbud

from postbud import Mailer
from postbud.cli import _main
from postbud.cli._common import one_line
from postbud.testing import FakeGmail, replies

REFUSED_A = (
    "553 5.1.3 The recipient address <a@example.com> is not a valid RFC 5321 address. For "
    "more information, go to https://support.google.com/a/answer/3221692 and review RFC "
    "5321 specifications."
)
MISSING_999 = "postbud: no message 999 in the spool (postbud outbox list shows the ids)\n"


@pytest.fixture
def env(fake_gmail: FakeGmail, tmp_path: Path) -> dict[str, str]:
    values = fake_gmail.settings_values(timeout=5, exit_timeout=3)
    return clean_env(tmp_path, **{f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})


@pytest.fixture
def closed_port() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield str(s.getsockname()[1])  # bound, not listening: refused


def send(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return postbud(env, "send", "--to", "a@example.com", "--subject", "x", *args, stdin="x\n")


def dead_letter(env: dict[str, str], fake_gmail: FakeGmail, to: str = "a@example.com") -> int:
    """A dead letter in the test's spool (refused for good on its first try); its id."""
    with Mailer(fake_gmail.settings(spool=env["POSTBUD_SPOOL"])) as mailer:
        fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT)
        mailer.submit(to, "Refused", "x")
        assert mailer.flush(10)
    return spool_rows(env)[-1][0]


def spool_rows(env: dict[str, str]) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(env["POSTBUD_SPOOL"])) as db, db:
        return [(int(i), str(s)) for i, s in db.execute("SELECT id, state FROM outbox")]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file of ``folder``: its modification time and a hash of its bytes."""
    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir())
    }


# -- errors name what the user typed -------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "security", "mode"), [("587", "ssl", "STARTTLS"), ("465", "starttls", "SSL")]
)
def test_contradicting_options_are_named_as_typed(
    env: dict[str, str], port: str, security: str, mode: str
) -> None:
    result = send(env, "--port", port, "--security", security)
    assert result.returncode == 2
    assert result.stderr == (
        f"postbud: --port {port} and --security {security} contradict each other ({port} is "
        f"Gmail's {mode} port): use --security ssl with --port 465, or --security starttls "
        "with --port 587; either alone is enough, the other follows.\n"
    )


def test_contradicting_variables_are_named_as_variables(env: dict[str, str]) -> None:
    result = send(dict(env, POSTBUD_PORT="587", POSTBUD_SECURITY="SSL"))
    assert result.returncode == 2
    assert result.stderr == (
        "postbud: POSTBUD_PORT=587 and POSTBUD_SECURITY=SSL contradict each other (587 is "
        "Gmail's STARTTLS port): set POSTBUD_SECURITY=ssl with POSTBUD_PORT=465, or "
        "POSTBUD_SECURITY=starttls with POSTBUD_PORT=587; either alone is enough, the other "
        "follows.\n"
    )


def test_one_option_over_the_variables_is_no_contradiction(env: dict[str, str]) -> None:
    contradicting = dict(env, POSTBUD_PORT="587", POSTBUD_SECURITY="ssl")
    result = postbud(contradicting, "outbox", "status", "--security", "starttls")
    assert result.returncode == 0, result.stderr  # the option wins; the port follows it


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        (["--timeout", "abc"], {}, "postbud: --timeout must be a number, got 'abc'.\n"),
        ([], {"POSTBUD_TIMEOUT": "abc"}, "postbud: POSTBUD_TIMEOUT must be a number, got 'abc'.\n"),
        (["--daily-limit", "0"], {}, "postbud: --daily-limit must be >= 1, got '0'.\n"),
        (["--port", "smtp"], {}, "postbud: --port must be a whole number, got 'smtp'.\n"),
    ],
)
def test_a_bad_value_is_named_where_it_came_from(
    env: dict[str, str], args: list[str], variables: dict[str, str], message: str
) -> None:
    result = send(dict(env, **variables), *args)
    assert (result.returncode, result.stderr) == (2, message)


def test_a_bad_file_option_is_named_as_the_option(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "ca_file.pem"  # the setting's name inside the value stays as it is
    result = send(env, "--ca-file", str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith(f"postbud: --ca-file '{missing}' does not exist: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "variable"),
    [
        ("--app-password", "POSTBUD_APP_PASSWORD"),
        ("--password", "POSTBUD_APP_PASSWORD"),
        ("--oauth-client-secret", "POSTBUD_OAUTH_CLIENT_SECRET"),
        ("--oauth-refresh-token", "POSTBUD_OAUTH_REFRESH_TOKEN"),
        ("--state-password", "POSTBUD_STATE_PASSWORD"),
    ],
)
def test_a_secret_option_says_secrets_come_from_the_environment(
    env: dict[str, str], fake_gmail: FakeGmail, option: str, variable: str
) -> None:
    hint = (
        f"error: {option} is not an option: secrets are read from the environment only, "
        f"where ps and the shell's history do not show them; set {variable} instead.\n"
    )
    for args, prog in (
        (["send", "--to", "a@example.com", option, "hunter2hunter2ab", "--subject", "x"], "send"),
        (["outbox", "status", f"{option}=hunter2hunter2ab"], "outbox"),
        ([option, "hunter2hunter2ab", "check"], ""),
    ):
        result = postbud(env, *args)
        assert result.returncode == 2
        assert result.stderr == f"postbud{' ' + prog if prog else ''}: {hint}"
        assert "hunter2" not in result.stdout + result.stderr  # never echoed back
    assert fake_gmail.messages == []


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        (
            ["--state", "http://127.0.0.1/"],
            {},
            "postbud: --state must be a redis:// or rediss:// URL, such as "
            "redis://redis.internal:6379/0, or leave it empty for the spool; got "
            "'http://127.0.0.1/'.\n",
        ),
        (
            [],
            {"POSTBUD_STATE": "redis://:hunter2hunter2@127.0.0.1:99999/0"},
            "postbud: POSTBUD_STATE 'redis://:********@127.0.0.1:99999/0' is not a valid URL: "
            "the port must be a number from 1 to 65535 (such as redis://redis.internal:6379/0, "
            "or leave it empty for the spool).\n",
        ),
        (
            ["--state", "redis://:hunter2hunter2@127.0.0.1:6379/0"],
            {},
            "postbud: --state 'redis://:********@127.0.0.1:6379/0' holds a password, which ps "
            "and the shell's history show: set POSTBUD_STATE_PASSWORD and give --state without "
            "it, such as --state redis://host:6379/0.\n",
        ),
    ],
)
def test_a_bad_state_is_named_as_typed_without_its_password(
    env: dict[str, str],
    fake_gmail: FakeGmail,
    args: list[str],
    variables: dict[str, str],
    message: str,
) -> None:
    result = send(dict(env, **variables), *args)
    assert (result.returncode, result.stderr) == (2, message)
    checked = postbud(dict(env, **variables), "check", *args)  # the settings step says it
    assert (checked.returncode, checked.stdout) == (2, f"FAIL settings  {message[9:]}")
    for text in (result.stdout, result.stderr, checked.stdout, checked.stderr):
        assert "hunter2" not in text
    assert fake_gmail.messages == []
    assert fake_gmail.connections == 0


def test_a_secret_option_of_the_job_is_the_jobs(env: dict[str, str]) -> None:
    code = "import sys; print(sys.argv[1:])"
    result = postbud(env, "run", "--", sys.executable, "-c", code, "--password=hunter2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['--password=hunter2']\n"


# -- one line, "postbud: " once ------------------------------------------------------------


def test_a_letter_that_fails_again_says_postbud_and_the_reply_code_once(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    key = dead_letter(env, fake_gmail)
    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT)
    result = postbud(env, "outbox", "retry", str(key))
    assert result.returncode == 1
    gave_up, failed = result.stderr.splitlines()
    # The worker's log line ("postbud gave up on ...") through the CLI's formatter.
    assert re.fullmatch(
        rf"postbud: gave up on <[^>]+> to a@example\.com: The server refused the recipients: "
        rf"{re.escape(REFUSED_A)}",
        gave_up,
    )
    assert failed == f"postbud: {key} failed again: The server refused the recipients: {REFUSED_A}"
    assert "postbud: postbud" not in result.stderr


def test_a_partly_refused_message_says_gmails_reply_on_one_line(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT)  # Gmail's reply has 4 lines
    result = send(env, "--to", "b@example.com")
    assert result.returncode == 1
    assert result.stderr == f"postbud: a@example.com was refused: {REFUSED_A}\n"
    assert [m.recipients for m in fake_gmail.messages] == [("b@example.com",)]


def test_one_line_drops_postbuds_own_name_and_joins_replies() -> None:
    assert one_line("postbud gave up on 2 message(s)") == "gave up on 2 message(s)"
    assert one_line("postbud: another process took over") == "another process took over"
    assert one_line("postbud's spool x was damaged") == "the spool x was damaged"
    assert one_line("postbud 1.0 is old") == "postbud 1.0 is old"
    reply = "5.1.3 The address is bad. For more\n5.1.3 information, go to\n5.1.3  https://x y\n"
    assert one_line(f"a@b.c was refused: 553 {reply}5.1.3 spec. 3e8e1473.fake - gsmtp") == (
        "a@b.c was refused: 553 5.1.3 The address is bad. For more information, go to "
        "https://x y spec."
    )


def test_the_log_formatter_says_postbud_once_and_a_traceback_only_with_debug() -> None:
    try:
        raise OSError("disk full")
    except OSError:
        info = sys.exc_info()
    record = logging.LogRecord(
        "postbud", logging.WARNING, __file__, 1, "postbud could not %s", ("write",), info
    )
    assert _main._LineFormatter(debug=False).format(record) == (
        "postbud: could not write (OSError: disk full; --debug shows the traceback)"
    )
    with_debug = _main._LineFormatter(debug=True).format(record)
    assert with_debug.startswith("postbud: could not write\nTraceback (most recent call last):")


# -- outbox ----------------------------------------------------------------------------------


def test_outbox_without_an_action_says_which_exist(env: dict[str, str]) -> None:
    result = postbud(env, "outbox")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: postbud outbox ")
    assert result.stderr.splitlines()[-1] == (
        "postbud outbox: error: an action is required: status, list, retry or purge "
        "('postbud outbox --help' says what each does)"
    )


@pytest.mark.parametrize("action", ["retry", "purge"])
def test_an_id_that_is_not_in_the_spool_exits_1_and_changes_nothing(
    env: dict[str, str], fake_gmail: FakeGmail, action: str
) -> None:
    key = dead_letter(env, fake_gmail)
    result = postbud(env, "outbox", action, str(key), "999")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MISSING_999)
    assert spool_rows(env) == [(key, "dead")]  # the good id was not acted on either
    assert fake_gmail.messages == []


def test_an_id_in_a_spool_that_does_not_exist_exits_1_and_creates_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    spool = tmp_path / "not" / "yet" / "outbox.sqlite"
    for action in ("retry", "purge"):
        result = postbud(dict(env, POSTBUD_SPOOL=str(spool)), "outbox", action, "999")
        assert (result.returncode, result.stderr) == (1, MISSING_999)
    assert not (tmp_path / "not").exists()


def test_purge_refuses_a_message_that_is_still_queued(
    env: dict[str, str], closed_port: str
) -> None:
    assert send(dict(env, POSTBUD_PORT=closed_port)).returncode == 75  # kept
    [(key, _)] = spool_rows(env)
    result = postbud(env, "outbox", "purge", str(key))
    assert result.returncode == 1
    assert result.stderr == (
        f"postbud: message {key} is queued, not a dead letter: purge deletes dead letters only\n"
    )
    assert spool_rows(env) == [(key, "queued")]


def test_status_and_list_take_no_ids(env: dict[str, str]) -> None:
    result = postbud(env, "outbox", "list", "3")
    assert result.returncode == 2
    assert result.stderr == "postbud: outbox list takes no IDs (they are for retry and purge).\n"


def test_status_and_list_of_a_spool_that_does_not_exist_create_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    spool = tmp_path / "cache" / "postbud" / "outbox.sqlite"
    missing = dict(env, POSTBUD_SPOOL=str(spool))
    status = postbud(missing, "outbox", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:3] == [
        f"spool:      {spool} (no file yet: nothing was ever kept)",
        "account:    postbud.test@gmail.com",
        "queued:     0",
    ]
    listing = postbud(missing, "outbox", "list")
    assert listing.returncode == 0
    assert listing.stdout == (
        "The spool has no mail of postbud.test@gmail.com: nothing queued, no dead letters.\n"
    )
    assert not (tmp_path / "cache").exists()


def test_status_and_list_write_nothing_and_send_nothing(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path, closed_port: str
) -> None:
    assert send(dict(env, POSTBUD_PORT=closed_port)).returncode == 75  # one message kept
    before = snapshot(tmp_path)
    for action in ("status", "list"):
        result = postbud(env, "outbox", action)  # the server is up, with credentials
        assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before
    assert fake_gmail.messages == []
    assert [state for _, state in spool_rows(env)] == ["queued"]


def test_list_shows_the_attempts_of_dead_letters(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    first = dead_letter(env, fake_gmail)
    result = postbud(env, "outbox", "list")
    assert result.returncode == 0
    row, dead, hint = result.stdout.splitlines()
    assert re.fullmatch(rf" +{first}  dead    \S+ \S+ UTC  to a@example\.com  'Refused'", row)
    assert re.fullmatch(
        rf" +dead since \S+ \S+ UTC, after 1 attempt: The server refused the recipients: "
        rf"{re.escape(REFUSED_A)}",
        dead,
    )
    assert hint.startswith("        hint: ")
    with closing(sqlite3.connect(env["POSTBUD_SPOOL"])) as db, db:
        db.execute("UPDATE outbox SET attempts = 3")
    assert ", after 3 attempts: " in postbud(env, "outbox", "list").stdout


def test_list_says_when_the_spool_is_empty(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    Mailer(fake_gmail.settings(spool=env["POSTBUD_SPOOL"])).close()  # the file exists
    assert Path(env["POSTBUD_SPOOL"]).exists()
    result = postbud(env, "outbox", "list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "The spool has no mail of postbud.test@gmail.com: nothing queued, no dead letters.\n"
    )


# -- help ------------------------------------------------------------------------------------


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _main.build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_option_and_argument_has_a_help_text() -> None:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # --app-password and the like: refused
                assert set(action.option_strings) <= set(_main.SECRET_OPTIONS)
                continue
            assert action.help, f"postbud {name} {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ("demo", "example:\n  postbud demo\n"),
        ("send", "examples:\n  echo 'Backup done' | postbud send --to ops@example.com"),
        ("run", "examples:\n  postbud run --to oncall@example.com -- /usr/local/bin/backup.sh"),
        ("check", "examples:\n  postbud check\n  postbud check --send me@example.com\n"),
        ("outbox", "examples:\n  postbud outbox status\n  postbud outbox list\n"),
        ("help", "example:\n  postbud help send\n"),
    ],
)
def test_every_command_shows_an_example(env: dict[str, str], command: str, example: str) -> None:
    result = postbud(env, command, "--help")
    assert result.returncode == 0
    assert example in result.stdout


def test_help_lists_choices_and_says_what_repeats(env: dict[str, str]) -> None:
    text = postbud(env, "send", "--help").stdout
    assert "--security {ssl,starttls}" in text
    for option in ("--to ADDRESS", "--cc ADDRESS", "--bcc ADDRESS", "--attach PATH"):
        assert re.search(rf"{option} +\S.*\(repeatable\)", text), option
    assert re.search(r"--timeout SECONDS +deadline of one delivery attempt \[default: 30 s\]", text)
    assert "[env: POSTBUD_TIMEOUT]" in text
    result = send(env, "--security", "tls")
    assert result.returncode == 2
    assert result.stderr.endswith(
        "error: argument --security: invalid choice: 'tls' (choose from 'ssl', 'starttls')\n"
    )


@pytest.mark.parametrize(
    ("command", "has", "has_not"),
    [
        ("send", ["--sender", "--max-age", "--state"], ["--alert-tag"]),
        ("run", ["--alert-tag", "--sender", "--state"], []),
        (
            "check",
            ["--sender", "--daily-limit", "--state"],
            ["--exit-timeout", "--max-age", "--alert-tag"],
        ),
        (
            "outbox",
            ["--spool", "--state", "--host"],
            ["--sender", "--to", "--subject", "--alert-tag"],
        ),
        ("demo", [], ["--username", "--spool", "--state"]),
    ],
)
def test_each_command_shows_only_its_options(
    env: dict[str, str], command: str, has: list[str], has_not: list[str]
) -> None:
    text = postbud(env, command, "--help").stdout
    for option in has:
        assert f"{option} " in text, option
    for option in has_not:
        assert f"{option} " not in text, option


def test_an_option_a_command_does_not_use_is_refused(env: dict[str, str]) -> None:
    result = postbud(env, "outbox", "status", "--sender", "x@example.com")
    assert result.returncode == 2
    # The command's usage and name, not the top parser's ("postbud: error: ...").
    assert result.stderr.startswith("usage: postbud outbox ")
    assert result.stderr.endswith(
        "postbud outbox: error: unrecognized arguments: --sender x@example.com\n"
    )
    sent = postbud(env, "send", "--to", "a@example.com", "--subject", "x", "--bogus")
    assert sent.returncode == 2 and sent.stderr.startswith("usage: postbud send ")
    assert sent.stderr.endswith("postbud send: error: unrecognized arguments: --bogus\n")


def test_postbud_help_command_is_the_commands_help(env: dict[str, str]) -> None:
    result = postbud(env, "help", "outbox")
    assert result.returncode == 0
    assert result.stdout == postbud(env, "outbox", "--help").stdout
    assert postbud(env, "help").stdout == postbud(env, "--help").stdout
