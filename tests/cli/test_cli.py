"""The command line: `postbud demo` and the shared exit-code rules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from postbud import cli
from postbud.cli import _main  # noqa: F401 - cli._main is patched below
from postbud.errors import AuthenticationError, ConfigurationError


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    env["POSTBUD_SPOOL"] = ""
    return subprocess.run(
        [sys.executable, "-m", "postbud", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


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
    assert "20 distinct errors: 8 mailed at once" in out
    assert "[digest, count 12]" in out
    assert "11 mails for 1,020 errors, and their counts add up to 1,020" in out
    assert "abcd efgh ijkl mnop" not in out and "abcdefghijklmnop" not in out
    assert captured.err == ""


def test_help_and_no_command() -> None:
    result = run("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    result = run()
    assert result.returncode == 2 and "usage: postbud" in result.stdout
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
