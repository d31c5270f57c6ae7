"""`postbud send/run/check/outbox` and `alert_on_crash`, as subprocesses against FakeGmail."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from clitools import postbud, python_file

from postbud import Mailer
from postbud.testing import FakeGmail, FakeGoogleTokens, replies

SECRET = "abcd efgh ijkl mnop"
SECRETS = ("1//fake-refresh-token", "GOCSPX-fake-client-secret", "ya29.")


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]  # bound, not listening: refused


@pytest.fixture
def env(fake_gmail: FakeGmail, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    values = fake_gmail.settings_values(
        timeout=5, exit_timeout=3, spool=str(tmp_path / "outbox.sqlite")
    )
    base.update({f"POSTBUD_{name.upper()}": str(value) for name, value in values.items()})
    return base


def queued(env: dict[str, str]) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(env["POSTBUD_SPOOL"])) as db, db:
        return [(str(s), str(e)) for s, e in db.execute("SELECT state, last_error FROM outbox")]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


# -- send --------------------------------------------------------------------------------


def test_send_reads_the_body_from_stdin_and_attaches(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    (tmp_path / "report.csv").write_text("day,count\nmon,3\n")
    result = postbud(
        env,
        "send",
        "--to",
        "you@example.com",
        "--subject",
        "Nightly report",
        "--attach",
        "report.csv",
        stdin="Backup finished.\n3 files.\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [received] = fake_gmail.messages
    assert result.stdout.strip() == received["Message-ID"]
    assert received["Subject"] == "Nightly report"
    assert received.text == "Backup finished.\n3 files.\n"
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() == "day,count\nmon,3\n"


def test_send_with_the_server_down_keeps_the_mail_and_exits_75(
    env: dict[str, str], fake_gmail: FakeGmail, closed_port: int
) -> None:
    down = dict(env, POSTBUD_PORT=str(closed_port))
    result = postbud(down, "send", "--to", "you@example.com", "--subject", "Kept", stdin="x\n")
    assert result.returncode == 75
    assert result.stderr.count("\n") == 1 and "kept in the spool" in result.stderr
    no_traceback(result)
    assert [state for state, _ in queued(env)] == ["queued"]

    # The next command, with the server back, delivers it before its own message.
    result = postbud(env, "send", "--to", "you@example.com", "--subject", "Next", stdin="y\n")
    assert result.returncode == 0, result.stderr
    assert [m["Subject"] for m in fake_gmail.messages] == ["Kept", "Next"]
    assert "1 of 1 message(s) left in the spool by an earlier run went out." in result.stderr
    assert queued(env) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not an address", "--subject", "x"], "not an address"),
        (["--to", "a@example.com", "--subject", "x", "--attach", "missing.pdf"], "missing.pdf"),
        (["--to", "a@example.com", "--subject", "x", "--html", "missing.html"], "--html"),
    ],
)
def test_send_usage_mistakes_exit_2_with_one_line(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = postbud(env, "send", *args, stdin="x\n", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    no_traceback(result)


def test_a_configuration_mistake_exits_2(env: dict[str, str]) -> None:
    result = postbud(dict(env, POSTBUD_PORT="smtp"), "send", "--to", "a@b.com", "--subject", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("postbud: POSTBUD_PORT") and result.stderr.count("\n") == 1
    no_traceback(result)


# -- run ---------------------------------------------------------------------------------


def test_run_success_passes_output_through_and_sends_nothing(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    result = postbud(env, "run", "--", sys.executable, "-c", "print('hello'); print('x', end='')")
    assert (result.returncode, result.stdout) == (0, "hello\nx")
    assert fake_gmail.messages == []


def test_run_failure_mails_status_output_and_masked_command(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    script = (
        "import sys\nfor i in range(150): print('line', i)\n"
        "sys.stdout.flush()\nimport time; time.sleep(0.3)\n"  # stdout's lines first
        "print('boom', file=sys.stderr)\nsys.exit(3)"
    )
    result = postbud(
        env,
        "run",
        "--to",
        "ops@example.com",
        "--",
        sys.executable,
        "-c",
        script,
        "--password=s3cr3t",
    )
    assert result.returncode == 3
    assert result.stdout.count("\n") == 150 and result.stderr.startswith("boom")
    [received] = fake_gmail.messages
    assert received.recipients == ("ops@example.com",)
    subject = received["Subject"] or ""
    assert subject.startswith("FAILED (exit status 3): ")
    text = received.text or ""
    assert "Result:    exit status 3" in text
    assert "Duration:" in text and "Host:" in text
    assert "Last 100 line(s) of output" in text
    assert "line 149" in text and "boom" in text and "line 50\n" not in text
    assert "--password=********" in text and "s3cr3t" not in received.data.decode()


def test_run_always_mails_success_too(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    result = postbud(env, "run", "--always", "--subject", "Backup", "--", "true")
    assert result.returncode == 0
    [received] = fake_gmail.messages
    assert (received["Subject"] or "").startswith("OK (exit status 0): Backup on ")


def test_run_reports_a_signal_and_exits_128_plus_n(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    result = postbud(env, "run", "--", "sh", "-c", "kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM
    [received] = fake_gmail.messages
    assert "killed by SIGTERM (15)" in (received["Subject"] or "")


def test_run_forwards_sigterm_to_the_command(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    code = "import time; print('ready', flush=True); time.sleep(30)"
    with subprocess.Popen(
        [sys.executable, "-m", "postbud", "run", "--", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        assert proc.returncode == 128 + signal.SIGTERM
        assert time.monotonic() - started < 10  # the child died at once, not after 30 s
    [received] = fake_gmail.messages
    assert "killed by SIGTERM" in (received["Subject"] or "")


def test_run_with_the_server_down_keeps_the_report_for_a_later_send(
    env: dict[str, str], fake_gmail: FakeGmail, closed_port: int
) -> None:
    down = dict(env, POSTBUD_PORT=str(closed_port))
    result = postbud(down, "run", "--", "sh", "-c", "echo failing; exit 4")
    assert result.returncode == 4  # the command's status, whatever happened to the mail
    assert "kept in the spool" in result.stderr
    no_traceback(result)
    assert fake_gmail.messages == []
    result = postbud(env, "send", "--to", "you@example.com", "--subject", "Later", stdin="z\n")
    assert result.returncode == 0, result.stderr
    subjects = [m["Subject"] or "" for m in fake_gmail.messages]
    assert "(exit status 4)" in subjects[0] and subjects[1] == "Later"


def test_run_a_missing_command_exits_127_and_reports(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    result = postbud(env, "run", "--", "/nonexistent/backup.sh")
    assert result.returncode == 127
    assert "cannot run /nonexistent/backup.sh" in result.stderr
    [received] = fake_gmail.messages
    assert "could not be started" in (received["Subject"] or "")


def test_run_without_a_command_is_a_usage_error(env: dict[str, str]) -> None:
    result = postbud(env, "run", "--")
    assert result.returncode == 2 and "needs a command" in result.stderr


# -- alert_on_crash ----------------------------------------------------------------------

CRASH = """
import threading
import postbud
postbud.alert_on_crash(to="ops@example.com")
if {thread}:
    def work():
        raise ValueError("bad row 7")
    t = threading.Thread(target=work, name="importer")
    t.start()
    t.join()
    print("main thread goes on")
else:
    1 / 0
"""


def crash(env: dict[str, str], tmp_path: Path, *, thread: bool) -> subprocess.CompletedProcess[str]:
    return python_script(env, tmp_path / "nightly.py", textwrap.dedent(CRASH.format(thread=thread)))


def python_script(env: dict[str, str], path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the script ``path`` in a fresh interpreter."""
    return python_file(env, path, code)


def test_alert_on_crash_in_the_main_thread(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    result = crash(env, tmp_path, thread=False)
    assert result.returncode == 1
    assert "ZeroDivisionError: division by zero" in result.stderr  # the usual traceback too
    [received] = fake_gmail.messages
    assert received.recipients == ("ops@example.com",)
    assert received["Subject"] == (
        "[CRITICAL] nightly.py: Uncaught ZeroDivisionError: division by zero"
    )
    assert "1 / 0" in (received.text or "")


def test_alert_on_crash_in_a_worker_thread(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    result = crash(env, tmp_path, thread=True)
    assert result.returncode == 0 and "main thread goes on" in result.stdout
    assert "ValueError: bad row 7" in result.stderr
    [received] = fake_gmail.messages
    assert received["Subject"] == (
        "[CRITICAL] nightly.py: Uncaught ValueError in thread importer: bad row 7"
    )
    text = received.text or ""
    assert re.search(r"Thread:\s+importer\n", text)
    assert re.search(r"Where:\s+\S+nightly.py:7 in work\n", text)


def test_alert_on_crash_with_the_server_down_keeps_the_alert(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path, closed_port: int
) -> None:
    result = crash(dict(env, POSTBUD_PORT=str(closed_port)), tmp_path, thread=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("postbud:")]
    assert len(lines) == 1 and "kept in the spool" in lines[0]
    assert [state for state, _ in queued(env)] == ["queued"]


# -- check -------------------------------------------------------------------------------


def test_check_passes_and_sends_a_test_message(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    result = postbud(env, "check", "--send", "me@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok")]
    assert steps == ["settings", "dns", "tcp", "tls", "ehlo", "login", "quota", "send"]
    assert "All checks passed." in result.stdout
    assert [m["Subject"] for m in fake_gmail.messages] == ["postbud check"]


def check_fails(result: subprocess.CompletedProcess[str], step: str, *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"FAIL {step}" in out
    for needle in needles:
        assert needle in out
    for secret in (SECRET, SECRET.replace(" ", ""), "wrongwrongwrongw", *SECRETS):
        assert secret not in out + result.stderr
    no_traceback(result)


def test_check_a_wrong_app_password(env: dict[str, str]) -> None:
    result = postbud(dict(env, POSTBUD_APP_PASSWORD="wrongwrongwrongw"), "check")
    check_fails(result, "login", "535", "app password", "https://myaccount.google.com/apppasswords")


def test_check_an_untrusted_certificate(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    fake_gmail.untrusted = True
    check_fails(postbud(env, "check"), "tls", "not trusted", "ca_file")


def test_check_a_refused_connection(env: dict[str, str], closed_port: int) -> None:
    result = postbud(dict(env, POSTBUD_PORT=str(closed_port)), "check")
    check_fails(result, "tcp", "refused the connection", "465")


def test_check_a_revoked_token(
    env: dict[str, str], fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    oauth = {k: v for k, v in env.items() if k != "POSTBUD_APP_PASSWORD"}
    oauth.update(
        POSTBUD_OAUTH_TOKEN_FILE=str(token_file),
        POSTBUD_OAUTH_TOKEN_URI=fake_google_tokens.token_uri,
    )
    assert postbud(oauth, "check").returncode == 0  # the token refreshes, XOAUTH2 works
    fake_google_tokens.fail_next("invalid_grant")
    check_fails(postbud(oauth, "check"), "token", "invalid_grant")


def test_check_a_configuration_mistake_exits_2(env: dict[str, str]) -> None:
    result = postbud({k: v for k, v in env.items() if k != "POSTBUD_APP_PASSWORD"}, "check")
    assert result.returncode == 2 and "FAIL settings" in result.stdout
    assert "POSTBUD_APP_PASSWORD" in result.stdout


# -- outbox ------------------------------------------------------------------------------


def test_outbox_status_list_retry_and_purge_dead_letters(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    mailer = Mailer(fake_gmail.settings(spool=env["POSTBUD_SPOOL"]))
    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT, times=2)
    mailer.submit("gone@example.com", "Refused one", "x")
    mailer.submit("gone2@example.com", "Refused two", "x")
    assert mailer.flush(10)
    mailer.close()
    assert [s for s, _ in queued(env)] == ["dead", "dead"]

    status = postbud(env, "outbox", "status")
    assert status.returncode == 0
    assert "queued:     0" in status.stdout and "dead:       2" in status.stdout
    assert "quota:      0 of 500" in status.stdout

    listing = postbud(env, "outbox", "list")
    assert listing.returncode == 0
    assert "'Refused one'" in listing.stdout and "dead since" in listing.stdout
    assert "553" in listing.stdout and "hint:" in listing.stdout
    first_id = listing.stdout.split()[0]

    retried = postbud(env, "outbox", "retry", first_id)
    assert retried.returncode == 0 and "1 dead letter(s) back in the queue." in retried.stdout
    assert [m["Subject"] for m in fake_gmail.messages] == ["Refused one"]

    purged = postbud(env, "outbox", "purge")
    assert purged.returncode == 0 and "1 dead letter(s) deleted." in purged.stdout
    assert queued(env) == []


def test_outbox_without_a_spool_says_so(env: dict[str, str]) -> None:
    result = postbud(dict(env, POSTBUD_SPOOL=""), "outbox", "status")
    assert result.returncode == 2 and "there is no spool" in result.stderr


# -- help --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["send", "run", "check", "outbox"])
def test_every_command_has_help(env: dict[str, str], command: str) -> None:
    result = postbud(env, command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: postbud {command}")
    assert "POSTBUD_" in result.stdout and "--username" in result.stdout


# -- edge cases found in review ------------------------------------------------------------


def test_run_does_not_wait_for_a_background_process_holding_its_output(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    started = time.monotonic()
    result = postbud(env, "run", "--", "sh", "-c", "sleep 30 & echo started; exit 3")
    assert result.returncode == 3
    assert time.monotonic() - started < 15  # not the 30 s of the background sleep
    [received] = fake_gmail.messages
    assert "started" in (received.text or "")


def test_run_lets_the_command_see_a_closed_pipe(env: dict[str, str]) -> None:
    pipeline = f"{sys.executable} -m postbud run -- yes | head -1"
    result = subprocess.run(
        ["sh", "-c", pipeline], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert result.stdout == "y\n"  # and it ended: yes got SIGPIPE once head left


def test_run_reports_a_huge_line_quickly_and_cut(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    code = "print('ab12' * 50_000); raise SystemExit(2)"
    started = time.monotonic()
    result = postbud(env, "run", "--", sys.executable, "-c", code)
    assert result.returncode == 2 and time.monotonic() - started < 15
    [received] = fake_gmail.messages
    assert "(a line of 200,000 bytes)" in (received.text or "")


def test_run_checks_the_recipients_before_running(env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = postbud(env, "run", "--to", "not an address", "--", "touch", str(marker))
    assert result.returncode == 0 and marker.exists()  # the job runs all the same (issue 17)
    assert result.stderr.startswith(
        "postbud: the job runs, but its failure cannot be mailed: --to: "
    )
    no_traceback(result)


def test_send_keeps_recipients_refused_for_now(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("RCPT", replies.TEMPORARY_REJECTION)
    result = postbud(
        env,
        "send",
        "--to",
        "a@example.com",
        "--to",
        "b@example.com",
        "--subject",
        "Two",
        stdin="x\n",
    )
    assert result.returncode == 75, result.stderr
    assert "a@example.com refused for now: 451" in result.stderr
    [received] = fake_gmail.messages
    assert received.recipients == ("b@example.com",)
    with closing(sqlite3.connect(env["POSTBUD_SPOOL"])) as db, db:
        assert [r for (r,) in db.execute("SELECT recipients FROM outbox")] == ['["a@example.com"]']


def test_a_report_may_use_the_alert_reserve(env: dict[str, str], fake_gmail: FakeGmail) -> None:
    limited = dict(env, POSTBUD_DAILY_LIMIT="10")
    with Mailer(fake_gmail.settings(spool=env["POSTBUD_SPOOL"], daily_limit=10)) as mailer:
        mailer.send([f"u{n}@example.com" for n in range(9)], "Nine", "x")  # 9 of 10 used
    result = postbud(limited, "send", "--to", "a@example.com", "--subject", "Normal", stdin="x\n")
    assert result.returncode == 75  # ordinary mail stops at 90 %
    result = postbud(limited, "run", "--", "false")
    assert result.returncode == 1
    assert "FAILED (exit status 1)" in (fake_gmail.messages[-1]["Subject"] or "")


def test_alert_on_crash_ignores_sys_exit_in_a_thread(
    env: dict[str, str], fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    result = python_script(
        env,
        tmp_path / "quits.py",
        "import sys, threading, postbud\n"
        "postbud.alert_on_crash()\n"
        "t = threading.Thread(target=sys.exit, args=(0,))\n"
        "t.start(); t.join()\n",
    )
    assert result.returncode == 0 and fake_gmail.messages == []


def test_outbox_retry_gives_an_old_dead_letter_a_new_life_and_says_if_it_died_again(
    env: dict[str, str], fake_gmail: FakeGmail
) -> None:
    with Mailer(fake_gmail.settings(spool=env["POSTBUD_SPOOL"])) as mailer:
        fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT, times=2)
        mailer.submit("a@example.com", "Old one", "x")
        mailer.submit("b@example.com", "Bad one", "x")
        assert mailer.flush(10)
    with closing(sqlite3.connect(env["POSTBUD_SPOOL"])) as db, db:  # both older than max_age
        db.execute("UPDATE outbox SET created = created - 10 * 86400")
    first, second = (
        line.split()[0] for line in postbud(env, "outbox", "list").stdout.splitlines()[::3]
    )
    assert postbud(env, "outbox", "retry", first).returncode == 0
    assert [m["Subject"] for m in fake_gmail.messages] == ["Old one"]
    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT)
    again = postbud(env, "outbox", "retry", second)
    assert again.returncode == 1
    assert f"{second} failed again: The server refused the recipients: 553 5.1.3" in again.stderr


def test_check_a_host_name_that_is_not_one(env: dict[str, str]) -> None:
    result = postbud(dict(env, POSTBUD_HOST="smtp..gmail.com"), "check")
    assert result.returncode == 2 and "FAIL settings" in result.stdout
    assert "POSTBUD_HOST 'smtp..gmail.com' is not a valid host name" in result.stdout
    no_traceback(result)


def test_debug_before_the_command_shows_the_traceback(env: dict[str, str]) -> None:
    result = postbud(env, "--debug", "send", "--to", "not an address", "--subject", "x", stdin="x")
    assert "Traceback" in result.stderr


def test_outbox_status_needs_no_password(env: dict[str, str], closed_port: int) -> None:
    down = dict(env, POSTBUD_PORT=str(closed_port))
    assert (
        postbud(down, "send", "--to", "a@example.com", "--subject", "x", stdin="x").returncode == 75
    )
    no_password = {k: v for k, v in env.items() if k != "POSTBUD_APP_PASSWORD"}
    result = postbud(no_password, "outbox", "status")
    assert result.returncode == 0 and "queued:     1" in result.stdout
    assert postbud(no_password, "outbox", "purge").returncode == 0
    retry = postbud(no_password, "outbox", "retry")  # sending needs the password
    assert retry.returncode == 2 and "POSTBUD_APP_PASSWORD" in retry.stderr


# -- postbud.cli.outbox: the same command in this process, for frameworks' commands ----


def test_outbox_in_process_says_what_the_command_says(
    fake_gmail: FakeGmail, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import postbud.cli

    settings = fake_gmail.settings(spool=str(tmp_path / "site.sqlite"))
    assert postbud.cli.outbox("status", settings=settings) == 0
    assert "(no file yet: nothing was ever kept)" in capsys.readouterr().out
    assert not (tmp_path / "site.sqlite").exists()  # status only reads
    fake_gmail.bad_recipients = {"nobody@example.com"}
    with Mailer(settings) as mailer:
        mailer.submit("nobody@example.com", "Kept", "x")
        mailer.flush(5)
    assert postbud.cli.outbox("list", settings=settings) == 0
    row = int(capsys.readouterr().out.split()[0])
    assert postbud.cli.outbox("purge", [row + 1], settings=settings) == 1
    assert capsys.readouterr().err == (
        f"postbud: no message {row + 1} in the spool (postbud outbox list shows the ids)\n"
    )
    assert postbud.cli.outbox("status", [row], settings=settings) == 2
    assert "takes no IDs" in capsys.readouterr().err
    assert postbud.cli.outbox("sweep", settings=settings) == 2
    assert capsys.readouterr().err == (
        "postbud: unknown outbox action 'sweep': use one of status, list, retry, purge.\n"
    )
    assert postbud.cli.outbox("purge", [row], settings=settings) == 0
    assert capsys.readouterr().out == "1 dead letter(s) deleted.\n"
    assert postbud.cli.outbox("status", settings=settings.replace(spool=None)) == 2
    assert capsys.readouterr().err.startswith("postbud: there is no spool")
