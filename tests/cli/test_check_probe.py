"""`postbud check` on SMTPTransport.probe(): send()'s diagnosis, --debug, the app password
shape; and `postbud demo` without its extras. Subprocesses against FakeGmail."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from clitools import postbud as run_postbud

import postbud
from postbud import Mailer
from postbud._check import TLS_FIRST_FIX
from postbud.cli._common import as_options
from postbud.errors import SMTPTimeoutError, TransportError
from postbud.testing import FakeGmail
from postbud.testing._hooks import ACCOUNT_PASSWORD

SHORT = "hunter2xy"  # 9 characters: not an app password


def clean_env(**values: object) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBUD_", "COV_CORE", "COVERAGE"))
    }
    env.update({f"POSTBUD_{name.upper()}": str(value) for name, value in values.items()})
    return env


def fake_env(fake: FakeGmail, tmp_path: Path, **overrides: object) -> dict[str, str]:
    values = fake.settings_values(spool=str(tmp_path / "outbox.sqlite"), timeout=5)
    values.update(overrides)
    return clean_env(**values)


def postbud_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_postbud(env, *args)


def failed_step(out: str) -> tuple[str, str, str]:
    """(step, text, fix) of the FAIL line of `postbud check`'s output."""
    lines = out.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("FAIL ")]
    _, step, text = lines[at].split(maxsplit=2)
    fix = lines[at + 1].strip() if at + 1 < len(lines) else ""
    return step, text, fix.removeprefix("fix: ")


# -- the same diagnosis as send() ---------------------------------------------------


def test_starttls_against_an_implicit_tls_port_says_check_ssl_before_the_timeout(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    env = fake_env(fake_gmail, tmp_path, security="starttls", timeout=20)
    started = time.monotonic()
    result = postbud_cli(env, "check")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 10, f"check waited {took:.1f} s of the 20 s timeout"
    step, text, fix = failed_step(result.stdout)
    assert step == "tls"
    assert "speaks TLS from the first byte" in text
    assert "closed the connection" not in result.stdout
    assert "reconnects on the next attempt" not in result.stdout
    # The library's words in the command line's spelling (--security ssl).
    assert fix == as_options(TLS_FIRST_FIX) and "--security ssl" in fix
    # send() with the same settings (a short deadline: it has to wait it out) says so too.
    same = fake_gmail.settings(security="starttls", timeout=1, spool=None)
    with Mailer(same) as mailer, pytest.raises(SMTPTimeoutError) as caught:
        mailer.send("you@example.com", "never sent", "x")
    assert TLS_FIRST_FIX in str(caught.value)
    assert "Traceback" not in result.stderr


def test_ssl_against_a_starttls_port_gives_send_s_words(
    fake_gmail_starttls: FakeGmail, tmp_path: Path
) -> None:
    settings = fake_gmail_starttls.settings(security="ssl", timeout=20, spool=None)
    with Mailer(settings) as mailer, pytest.raises(TransportError) as caught:
        mailer.send("you@example.com", "never sent", "x")
    sent = caught.value
    started = time.monotonic()
    report = postbud.diagnose(settings)
    assert time.monotonic() - started < 10
    failed = report.steps[-1]
    assert (report.exit_code, failed.name, failed.ok) == (1, "tls", False)
    assert (failed.text, failed.fix) == (sent.description, sent.hint)
    assert failed.fix is not None and "'ssl' is port 465" in failed.fix


def test_a_good_starttls_check_goes_through_probe(
    fake_gmail_starttls: FakeGmail, tmp_path: Path
) -> None:
    result = postbud_cli(fake_env(fake_gmail_starttls, tmp_path), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.split()[:2] for line in result.stdout.splitlines()[:-1]]
    assert steps == [
        ["ok", name] for name in ("settings", "dns", "tcp", "tls", "ehlo", "login", "quota")
    ]
    assert "warn" not in result.stdout  # a 16-letter app password: no verdict to show
    # the TCP step, the TLS+EHLO probe and the login probe: three connections, one login
    assert fake_gmail_starttls.commands.count("STARTTLS") == 2
    assert fake_gmail_starttls.logins == [fake_gmail_starttls.username]


def test_every_step_follows_intercept(fake_gmail: FakeGmail) -> None:
    gmail = postbud.Settings(
        username=fake_gmail.username, app_password=fake_gmail.app_password, spool=None
    )
    with fake_gmail.intercept():
        report = postbud.diagnose(gmail)
    assert report.ok, report.steps
    assert report.steps[2].text == f"connected to 127.0.0.1:{fake_gmail.port}"
    assert fake_gmail.logins == [fake_gmail.username]


# -- --debug ------------------------------------------------------------------------


def test_debug_prints_the_traceback_of_a_failed_step(
    fake_gmail_starttls: FakeGmail, tmp_path: Path
) -> None:
    env = fake_env(fake_gmail_starttls, tmp_path, security="ssl")
    plain = postbud_cli(env, "check")
    assert plain.returncode == 1 and "Traceback" not in plain.stdout + plain.stderr
    for args in (("--debug", "check"), ("check", "--debug")):
        debug = postbud_cli(env, *args)
        assert debug.returncode == 1, debug.stdout + debug.stderr
        assert debug.stdout == plain.stdout  # the report is the same; the traceback is extra
        assert "Traceback (most recent call last)" in debug.stderr
        assert "ssl.SSLError" in debug.stderr or "SSLError" in debug.stderr
        assert "postbud.errors.TransportError: TLS failed with" in debug.stderr


def test_debug_traceback_of_a_refused_login_shows_no_secret(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    wrong = "wrongwrongwrongw"
    result = postbud_cli(fake_env(fake_gmail, tmp_path, app_password=wrong), "--debug", "check")
    assert result.returncode == 1
    assert "postbud.errors.AuthenticationError" in result.stderr
    assert wrong not in result.stdout + result.stderr


# -- the app password's shape -------------------------------------------------------


def test_a_9_character_password_is_named_before_the_login_and_as_its_fix(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    result = postbud_cli(fake_env(fake_gmail, tmp_path, app_password=SHORT), "check")
    assert result.returncode == 1, result.stdout + result.stderr
    shape = (
        "an app password is 16 letters; this value has 9 characters — is it your account password?"
    )
    lines = result.stdout.splitlines()
    warn = lines.index(f"warn password  {shape}")
    assert lines[warn - 1].startswith("ok   ehlo") and lines[warn + 1].startswith("FAIL login")
    step, text, fix = failed_step(result.stdout)
    assert step == "login" and "535 5.7.8" in text
    assert fix.startswith(shape) and "https://myaccount.google.com/apppasswords" in fix
    assert SHORT not in result.stdout + result.stderr


def test_the_account_password_is_named_and_gmail_s_534_hint_kept(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    env = fake_env(fake_gmail, tmp_path, app_password=ACCOUNT_PASSWORD)
    result = postbud_cli(env, "check")
    assert result.returncode == 1
    assert "warn password  an app password is 16 letters; this value has 21 characters" in (
        result.stdout
    )
    step, text, fix = failed_step(result.stdout)
    assert step == "login" and "534 5.7.9" in text
    assert fix.startswith("Gmail wants an app password")
    assert ACCOUNT_PASSWORD not in result.stdout + result.stderr


def test_a_good_app_password_gets_no_verdict_and_a_wrong_one_keeps_gmail_s_hint(
    fake_gmail: FakeGmail,
) -> None:
    good = postbud.diagnose(fake_gmail.settings(app_password=" abcd efgh ijkl mnop\n", spool=None))
    assert good.ok and not any(step.warning for step in good.steps)
    wrong = postbud.diagnose(fake_gmail.settings(app_password="wrongwrongwrongw", spool=None))
    assert [s.name for s in wrong.steps][-2:] == ["ehlo", "login"]  # 16 letters: no verdict
    assert wrong.steps[-1].fix is not None
    assert wrong.steps[-1].fix.startswith("Gmail did not accept the app password")


# -- postbud demo without its extras -------------------------------------------------

BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCK = sys.argv[1].split(",")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCK):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from postbud.cli import main
    sys.exit(main(["demo"]))
    """
)


@pytest.mark.parametrize(
    ("blocked", "named", "command"),
    [
        ("aiosmtpd,google.auth", "aiosmtpd, google-auth", "pip install 'postbud[testing,oauth]'"),
        ("google.auth", "google-auth", "pip install 'postbud[oauth]'"),
        ("trustme", "trustme", "pip install 'postbud[testing]'"),
    ],
)
def test_demo_names_everything_missing_at_once(blocked: str, named: str, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(spool=""),
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # stopped before the demo started
    [line] = result.stderr.splitlines()
    assert line.startswith("postbud: the demo needs the ")
    assert f"({named} not installed)" in line and line.endswith(command)
