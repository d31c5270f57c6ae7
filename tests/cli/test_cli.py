"""The command line: `postbud demo` and the shared exit-code rules."""

from __future__ import annotations

import os
import subprocess

import pytest
from clitools import postbud

from postbud import cli
from postbud.cli import _main  # noqa: F401 - cli._main is patched below
from postbud.errors import AuthenticationError, ConfigurationError


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    env["POSTBUD_SPOOL"] = ""
    return postbud(env, *args)


def test_demo_sends_both_ways_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "1. App password over implicit TLS" in out
    assert "2. App password over STARTTLS" in out
    assert out.count("The server received:") == 3
    assert "Commands: EHLO AUTH PLAIN MAIL RCPT RCPT DATA QUIT" in out
    assert "Commands: EHLO STARTTLS EHLO AUTH PLAIN MAIL RCPT RCPT DATA QUIT" in out
    assert "| This message went through a verified TLS connection." in out
    assert "3. OAuth2 (SASL XOAUTH2)" in out
    assert "the token endpoint was asked once" in out
    assert "Commands: EHLO AUTH XOAUTH2 MAIL RCPT DATA MAIL RCPT DATA QUIT" in out
    assert "Hint: Gmail did not accept the app password" in out
    assert "5. Error alerts with storm control" in out
    assert "[first, count 1] [ERROR] demo.shop: payment for order 0 failed" in out
    assert "[follow-up, count 999]" in out
    assert "20 distinct errors: 8 mailed at once, then alert_cap is hit." in out
    assert "alert_cap allows 10 alert mails an hour; the first alert and the follow-up" in out
    assert "so 8 new errors get a first alert and the other 12 wait for the hour's digest" in out
    assert "[digest, count 12]" in out
    # the digest's rows by count, then message: the same lines on every run
    rows = [line for line in out.splitlines() if "  nightly job #" in line and "| 1 " in line]
    assert [row.split("nightly job ")[1].split()[0] for row in rows] == ["#8", "#9", "#10"]
    assert "| ... and 9 more rows" in out
    assert "11 mails for 1,020 errors, and their counts add up to 1,020" in out
    assert "abcd efgh ijkl mnop" not in out and "abcdefghijklmnop" not in out
    assert captured.err == ""


def test_help_and_no_command() -> None:
    result = run("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    result = run()  # like git and pip: the usage on stderr, nothing on stdout
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "usage: postbud [-h] [--version] [--debug] COMMAND ...\n"
        "postbud: error: a command is required: demo, send, run, check, outbox, auth or help "
        "('postbud --help' says what each does)\n"
    )
    result = run("nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.parametrize(
    ("error", "status"),
    [(ConfigurationError("bad setting"), 2), (AuthenticationError("no login"), 1)],
)
def test_errors_become_one_line_and_an_exit_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    status: int,
) -> None:
    def boom(args: object) -> int:
        raise error

    monkeypatch.setattr(cli._main, "_demo", boom)
    assert cli.main(["demo"]) == status
    assert capsys.readouterr().err == f"postbud: {error}\n"
    with pytest.raises(type(error)):
        cli.main(["--debug", "demo"])
