"""Attacks on postbud's secrets and set-up (issue 15, points 2-4): app passwords with
spaces, postbud's own secrets in every spelling, hostile login answers, echoed
credentials, test logs, token endpoints in clear, and links or foreign files at the
spool's path."""

from __future__ import annotations

import base64
import logging
import os
import socket
import stat
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import postbud
from postbud import Mailer
from postbud._mask import mask_text
from postbud._outbox import RetryPolicy
from postbud.errors import AuthenticationError, ConfigurationError
from postbud.testing import FakeGmail

PASSWORD = "abcd efgh ijkl mnop"  # FakeGmail's app password, as Google shows it
BARE = "abcdefghijklmnop"


def spellings(username: str) -> list[str]:
    """Every way the app password could show up, upper and lower case."""
    plain = base64.b64encode(f"\0{username}\0{BARE}".encode()).decode().rstrip("=")
    login = base64.b64encode(BARE.encode()).decode().rstrip("=")
    found = [PASSWORD, BARE, plain, login, "efgh ijkl", "ijkl mnop"]
    return found + [s.upper() for s in found]


def leaks(text: str, username: str) -> list[str]:
    lowered = text.lower()
    return [s for s in spellings(username) if s.lower() in lowered]


# -- 2. masking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        f"POSTBUD_APP_PASSWORD={PASSWORD}",
        f"password={PASSWORD} and then",
        f"app_password: {PASSWORD}",
        f"+ export POSTBUD_APP_PASSWORD='{PASSWORD}'",
        f'{{"app_password": "{PASSWORD}"}}',
    ],
)
def test_an_app_password_with_spaces_is_masked_whole(line: str) -> None:
    masked = mask_text(line)
    assert "efgh" not in masked and "mnop" not in masked, masked
    assert "********" in masked


def test_alerts_mask_the_handlers_own_secrets_in_every_spelling(fake_gmail: FakeGmail) -> None:
    user = fake_gmail.username
    plain = base64.b64encode(f"\0{user}\0{BARE}".encode()).decode()
    handler = postbud.AlertHandler(mailer=fake_gmail.mailer(), to="oncall@example.com")
    log = logging.getLogger("app.secrets")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:  # a message, a traceback and an extra field that hold the password
            raise RuntimeError(f"login with {PASSWORD.upper()} failed: AUTH PLAIN {plain}")
        except RuntimeError:
            log.exception("env: APP=%s", BARE, extra={"note": PASSWORD})
        handler.flush()
    finally:
        log.removeHandler(handler)
        handler.close()
        handler.mailer.close()
    [mail] = fake_gmail.messages
    assert leaks(mail.data.decode("utf-8", "replace"), user) == []
    assert "********" in (mail.text or "")


def test_postbud_run_masks_the_app_password_a_job_prints(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    values = fake_gmail.settings_values(timeout=5, spool=str(tmp_path / "outbox.sqlite"))
    env.update({f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})
    job = (
        'echo "$POSTBUD_APP_PASSWORD"; env | grep APP_PASSWORD; set -x; '
        ': "$POSTBUD_APP_PASSWORD"; exit 3'
    )
    result = subprocess.run(
        [sys.executable, "-m", "postbud", "run", "--", "/bin/sh", "-c", job],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    [mail] = fake_gmail.messages
    assert leaks(mail.data.decode("utf-8", "replace"), fake_gmail.username) == []


# -- 3. hostile login answers, echoed credentials, test logs -----------------------------


def locals_of(exc: BaseException) -> str:
    """What a traceback printer that shows locals (Sentry, rich) would print."""
    rendered = traceback.TracebackException(
        type(exc), exc, exc.__traceback__, capture_locals=True
    ).format()
    return "".join(rendered)


def test_a_malformed_challenge_is_a_refused_login_with_nothing_secret_in_the_chain(
    fake_gmail: FakeGmail,
) -> None:
    fake_gmail.fail_next("AUTH", "334 abc")  # not base64: smtplib raises binascii.Error
    with fake_gmail.mailer(spool=None) as mailer, pytest.raises(AuthenticationError) as info:
        mailer.send("you@example.com", "Hi", "x")
    error = info.value
    assert error.retryable and error.retry_after == 300.0
    shown = "\n".join([str(error), repr(error), error.message, locals_of(error)])
    assert leaks(shown, fake_gmail.username) == [], shown


def test_the_outbox_pauses_instead_of_logging_in_again_and_again(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("AUTH", "334 abc", times=100)
    mailer = Mailer(fake_gmail.settings(), policy=RetryPolicy(base_delay=0.01))
    try:
        mailer.submit("you@example.com", "waits", "x")
        time.sleep(1.5)
        [row] = mailer.outbox.rows()
        waits = mailer.outbox.waits()  # the account's logins are paused (5 minutes)
        assert row.state == "queued" and waits is not None and waits[0] == "login"
        assert waits[1].until > time.time() + 250
        assert fake_gmail.commands.count("AUTH PLAIN") == 1  # one login, not one a second
    finally:
        mailer.close(0)


def echoing(username: str) -> str:
    """A reply that echoes the AUTH PLAIN line upper-cased (made here, so that the test's
    own frame, part of the traceback, holds no copy of it)."""
    echo = base64.b64encode(f"\0{username}\0{BARE}".encode()).decode().upper()
    return f'500 5.5.2 command "{echo}" not recognized {{id}} - gsmtp'


def test_a_server_that_echoes_the_auth_line_gets_it_masked(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("AUTH", echoing(fake_gmail.username))
    with fake_gmail.mailer(spool=None) as mailer, pytest.raises(AuthenticationError) as info:
        mailer.send("you@example.com", "Hi", "x")
    error = info.value
    shown = "\n".join([str(error), repr(error), error.message, locals_of(error)])
    assert leaks(shown, fake_gmail.username) == [], shown
    assert "********" in error.message


class Rechallenging(threading.Thread):
    """A plain-TCP SMTP server that asks for the AUTH PLAIN credentials a second time."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lines: list[bytes] = []

    def run(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"220 test ESMTP\r\n")
            for line in reader:
                self.lines.append(line.rstrip(b"\r\n"))
                if line.upper().startswith(b"EHLO"):
                    conn.sendall(b"250-test\r\n250 AUTH PLAIN LOGIN\r\n")
                elif line.upper().startswith(b"AUTH"):
                    conn.sendall(b"334 \r\n")  # again, after the initial response
                else:
                    conn.sendall(b"501 5.7.0 cancelled\r\n")
                    return


def test_a_second_challenge_after_the_credentials_is_cancelled_not_answered() -> None:
    import smtplib

    server = Rechallenging()
    server.start()
    smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    try:
        smtp.ehlo("localhost")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            postbud.AppPassword(PASSWORD).login(smtp, "me@gmail.com")
    finally:
        smtp.close()
        server.join(5)
        server.listener.close()
    auth, answer = server.lines[1], server.lines[2]
    assert auth.startswith(b"AUTH PLAIN ")  # the credentials, once
    assert answer == b"*"  # RFC 4954's cancel, not the credentials a second time
    assert b"cancelled the login" in info.value.smtp_error


def test_fake_gmail_logs_no_credentials(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    blob = base64.b64encode(f"\0{fake_gmail.username}\0{BARE}".encode()).decode()
    with caplog.at_level(logging.DEBUG, logger="mail.log"):
        raw = socket.create_connection(("127.0.0.1", fake_gmail.port), timeout=5)
        context: ssl.SSLContext = fake_gmail.ssl_context()
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.recv(1024)
            tls.sendall(b"ehlo localhost\r\n")
            time.sleep(0.1)
            tls.recv(4096)
            tls.sendall(f"auth plain {blob}\r\n".encode())  # lower case: aiosmtpd's own
            time.sleep(0.2)  # masking only knows "AUTH"
            tls.recv(1024)
            tls.sendall(b"quit\r\n")
            time.sleep(0.1)
    assert "auth plain" in caplog.text.lower()  # the line was logged...
    assert blob not in caplog.text  # ...without the credentials


def test_fake_gmail_logs_no_password_typed_in_clear(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    with caplog.at_level(logging.DEBUG, logger="mail.log"):
        raw = socket.create_connection(("127.0.0.1", fake_gmail.port), timeout=5)
        context: ssl.SSLContext = fake_gmail.ssl_context()
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            for line in (
                b"EHLO localhost",
                b"AUTH LOGIN",
                b"bWVAZ21haWwuY29t",
                b"Hunter2-in-clear!",
            ):
                tls.sendall(line + b"\r\n")  # the password is not base64: aiosmtpd logs it
                time.sleep(0.15)
                tls.recv(4096)
            tls.sendall(b"QUIT\r\n")
            time.sleep(0.1)
    assert "decode base64" in caplog.text
    assert "Hunter2-in-clear!" not in caplog.text


# -- 4. token endpoints, the spool's path ------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["http://oauth.example.com/token", "http://10.0.0.1/token", "ftp://x/token", "token"]
)
def test_a_token_endpoint_in_clear_is_refused(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an https:// URL") as info:
        postbud.Settings(
            username="me@gmail.com",
            oauth_client_id="id",
            oauth_client_secret="secret",
            oauth_refresh_token="refresh",
            oauth_token_uri=uri,
        )
    assert "oauth_token_uri" in str(info.value)


@pytest.mark.parametrize(
    "uri", ["https://oauth2.example.com/token", "http://127.0.0.1:8080/t", "http://[::1]/t"]
)
def test_https_or_loopback_token_endpoints_are_accepted(uri: str) -> None:
    settings = postbud.Settings(
        username="me@gmail.com",
        oauth_client_id="id",
        oauth_client_secret="secret",
        oauth_refresh_token="refresh",
        oauth_token_uri=uri,
        spool=None,
    )
    assert settings.oauth_token_uri == uri


def test_a_foreign_token_endpoint_is_not_called_google(
    fake_google_tokens: postbud.testing.FakeGoogleTokens, fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    from postbud.errors import TokenRefreshError

    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    fake_google_tokens.fail_next("invalid_grant")
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,
    )
    with Mailer(settings) as mailer, pytest.raises(TokenRefreshError) as info:
        mailer.send("you@example.com", "Hi", "x")
    assert "Google refused" not in str(info.value)
    assert fake_google_tokens.token_uri in str(info.value)


@pytest.fixture
def warnings_of_postbud(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="postbud"):
        yield caplog


def test_a_link_at_the_spool_path_is_not_followed(
    fake_gmail: FakeGmail, tmp_path: Path, warnings_of_postbud: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a spool")
    target.chmod(0o644)
    link = tmp_path / "outbox.sqlite"
    link.symlink_to(target)
    with fake_gmail.mailer(spool=str(link)) as mailer:
        assert not mailer.outbox.shared  # memory, with one warning
        mailer.send("you@example.com", "still sent", "x")
    assert "symbolic link" in warnings_of_postbud.text
    assert target.read_text() == "not a spool"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not chmodded through the link


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_spool_of_another_user_is_not_used(
    fake_gmail: FakeGmail, tmp_path: Path, warnings_of_postbud: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    postbud._outbox.Database(str(path)).close()
    os.chown(path, 65534, 65534)
    path.chmod(0o666)
    with fake_gmail.mailer(spool=str(path)) as mailer:
        assert not mailer.outbox.shared
    assert "belongs to another user" in warnings_of_postbud.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o666  # left alone


def test_a_link_as_the_wal_file_is_refused(
    fake_gmail: FakeGmail, tmp_path: Path, warnings_of_postbud: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    postbud._outbox.Database(str(path)).close()
    (tmp_path / "outbox.sqlite-wal").unlink(missing_ok=True)
    (tmp_path / "outbox.sqlite-wal").symlink_to(tmp_path / "planted")
    with fake_gmail.mailer(spool=str(path)) as mailer:
        assert not mailer.outbox.shared
    assert "symbolic link" in warnings_of_postbud.text
    assert not (tmp_path / "planted").exists()


def test_every_missing_folder_is_made_0700_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "outbox.sqlite"
    old = os.umask(0)
    try:
        postbud._outbox.Database(str(path)).close()
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_test_security_md_names_exists() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "security.md").read_text()
    table = page[page.index("## What postbud defends against") :]
    named = set(re.findall(r"(?:::|`)(test_\w+)", table))
    defined = {
        m.group(1)
        for path in (root / "tests").rglob("test_*.py")
        for m in re.finditer(r"^def (test_\w+)", path.read_text(), re.M)
    }
    assert len(named) >= 12
    assert named <= defined, sorted(named - defined)


def test_a_refused_login_shows_no_credential_in_a_traceback_with_locals(
    fake_gmail: FakeGmail,
) -> None:
    mailer = fake_gmail.mailer(spool=None, app_password="wrongwrongwrongw")
    with mailer, pytest.raises(AuthenticationError) as info:
        mailer.send("you@example.com", "Hi", "x")
    shown = locals_of(info.value)
    plain = base64.b64encode(f"\0{fake_gmail.username}\0wrongwrongwrongw".encode()).decode()
    assert "wrongwrong" not in shown.lower() and plain.rstrip("=") not in shown


def test_a_rejected_oauth_token_shows_no_secret_in_a_traceback_with_locals(
    fake_google_tokens: postbud.testing.FakeGoogleTokens, fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,
    )
    with Mailer(settings) as mailer:
        mailer.send("you@example.com", "first", "x")  # a token is issued and cached
        fake_gmail.revoke_tokens()
        fake_gmail.close_connections()  # the next send logs in again with the cached token
        fake_google_tokens.fail_next("invalid_grant")  # and the refresh is refused
        with pytest.raises(AuthenticationError) as info:
            mailer.send("you@example.com", "second", "x")
        shown = "\n".join([str(info.value), repr(info.value), locals_of(info.value)])
    secrets = [
        fake_google_tokens.refresh_token,
        fake_google_tokens.client_secret,
        *fake_google_tokens.issued,
    ]
    assert secrets and not [s for s in secrets if s in shown]
