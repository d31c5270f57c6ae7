"""OAuth2 / XOAUTH2 against FakeGmail and the fake Google token endpoint."""

from __future__ import annotations

import base64
import logging
import smtplib
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

import postbud
from postbud import Mailer, OAuth2, Settings
from postbud.errors import AuthenticationError, ConfigurationError, TokenRefreshError
from postbud.testing import FakeGmail, FakeGoogleTokens, replies

TO = "you@example.com"
# Gmail's 334 challenge for a refused token, as captured from smtp.gmail.com.
GMAIL_XOAUTH2_CHALLENGE = (
    b"eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29v"
    b"Z2xlLmNvbS8ifQ=="
)


def oauth_mailer(fake: FakeGmail, **settings: object) -> Mailer:
    return fake.mailer(app_password=None, **settings)


def token_file_mailer(fake: FakeGmail, tokens: FakeGoogleTokens, tmp_path: Path) -> Mailer:
    path = tokens.authorized_user_file(tmp_path / "token.json")
    return oauth_mailer(fake, oauth_token_file=str(path), oauth_token_uri=tokens.token_uri)


# -- every way in -----------------------------------------------------------------------


def test_authorized_user_file(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    with token_file_mailer(fake_gmail, fake_google_tokens, tmp_path) as mailer:
        mailer.send(TO, "Hi", "x")
    assert fake_gmail.commands[:2] == ["EHLO", "AUTH XOAUTH2"]
    assert fake_gmail.logins == [fake_gmail.username]
    [request] = fake_google_tokens.requests
    assert request["grant_type"] == "refresh_token"
    assert request["refresh_token"] == fake_google_tokens.refresh_token


def test_refresh_token_settings_over_starttls(
    fake_gmail_starttls: FakeGmail, fake_google_tokens: FakeGoogleTokens
) -> None:
    t = fake_google_tokens
    with oauth_mailer(
        fake_gmail_starttls,
        oauth_client_id=t.client_id,
        oauth_client_secret=t.client_secret,
        oauth_refresh_token=t.refresh_token,
        oauth_token_uri=t.token_uri,
    ) as mailer:
        mailer.send(TO, "Hi", "x")
    assert fake_gmail_starttls.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH XOAUTH2"]
    assert len(fake_gmail_starttls.messages) == 1


def test_service_account_sends_as_the_subject(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    key = fake_google_tokens.service_account_file(tmp_path / "sa.json")
    with oauth_mailer(
        fake_gmail, service_account_file=str(key), oauth_token_uri=fake_google_tokens.token_uri
    ) as mailer:
        mailer.send(TO, "Hi", "x")
    [request] = fake_google_tokens.requests
    assert request["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert fake_gmail.logins == [fake_gmail.username]  # XOAUTH2 user = the subject


def test_any_google_credentials_object(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens
) -> None:
    from google.oauth2.credentials import Credentials

    t = fake_google_tokens
    creds = Credentials(
        None,
        refresh_token=t.refresh_token,
        client_id=t.client_id,
        client_secret=t.client_secret,
        token_uri=t.token_uri,
    )
    with fake_gmail.mailer(app_password=None, auth=OAuth2.from_credentials(creds)) as mailer:
        mailer.send(TO, "Hi", "x")
    assert creds.token == t.issued[0]


def test_oauth_through_the_environment(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, postbud_spool: Path
) -> None:
    t = fake_google_tokens
    env = {
        "POSTBUD_SPOOL": str(postbud_spool),  # an environment of its own: not ~/.cache
        "POSTBUD_USERNAME": fake_gmail.username,
        "POSTBUD_OAUTH_CLIENT_ID": t.client_id,
        "POSTBUD_OAUTH_CLIENT_SECRET": t.client_secret,
        "POSTBUD_OAUTH_REFRESH_TOKEN": t.refresh_token,
        "POSTBUD_OAUTH_TOKEN_URI": t.token_uri,
        "POSTBUD_HOST": "127.0.0.1",
        "POSTBUD_PORT": str(fake_gmail.port),
        "POSTBUD_CA_FILE": fake_gmail.ca_file,
    }
    with Mailer(Settings.from_env(env)) as mailer:
        assert isinstance(mailer._transport.credentials, OAuth2)  # type: ignore[attr-defined]
        mailer.send(TO, "From env", "x")
    assert fake_gmail.messages[0]["Subject"] == "From env"


# -- caching and refreshing ---------------------------------------------------------------


def test_token_is_cached_across_sends_and_connections(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    mailer = token_file_mailer(fake_gmail, fake_google_tokens, tmp_path)
    for i in range(3):
        mailer.send(TO, f"n{i}", "x")
        mailer.close()  # a new connection and a new AUTH each time
    assert fake_gmail.commands.count("AUTH XOAUTH2") == 3
    assert len(fake_google_tokens.requests) == 1


def test_token_is_refreshed_shortly_before_expiry(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    # google-auth treats a token as stale 3 min 45 s (225 s) before it expires.
    fake_google_tokens.lifetime = 300  # fresh for another 75 s: reused
    mailer = token_file_mailer(fake_gmail, fake_google_tokens, tmp_path)
    for n in range(2):
        mailer.send(TO, f"a{n}", "x")
        mailer.close()
    assert len(fake_google_tokens.requests) == 1
    fake_google_tokens.lifetime = 200  # stale as soon as issued: refreshed every login
    stale = token_file_mailer(fake_gmail, fake_google_tokens, tmp_path)
    for n in range(2):
        stale.send(TO, f"b{n}", "x")
        stale.close()
    assert len(fake_google_tokens.requests) == 3


def test_concurrent_logins_refresh_once(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    path = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    shared = OAuth2.from_authorized_user_file(path, token_uri=fake_google_tokens.token_uri)
    mailers = [fake_gmail.mailer(app_password=None, auth=shared) for _ in range(6)]
    barrier = threading.Barrier(len(mailers))
    errors: list[BaseException] = []

    def work(mailer: Mailer) -> None:
        barrier.wait()
        try:
            mailer.send(TO, "threaded", "x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            mailer.close()

    threads = [threading.Thread(target=work, args=(m,)) for m in mailers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake_gmail.connections == 6 and len(fake_gmail.messages) == 6
    assert len(fake_google_tokens.requests) == 1 and shared.refreshes == 1


def test_rejected_token_is_refreshed_and_login_retried_once(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    mailer = token_file_mailer(fake_gmail, fake_google_tokens, tmp_path)
    mailer.send(TO, "1", "x")
    mailer.close()
    fake_gmail.revoke_tokens()  # the cached token still looks valid to google-auth
    mailer.send(TO, "2", "x")
    mailer.close()
    assert fake_gmail.commands.count("AUTH XOAUTH2") == 3
    assert len(fake_google_tokens.requests) == 2
    assert fake_gmail.xoauth2_error_answers == [b""]  # the empty line Gmail requires
    assert len(fake_gmail.messages) == 2


def test_a_token_that_keeps_failing_stops_after_one_retry(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    with FakeGoogleTokens() as unlinked:  # its tokens mean nothing to fake_gmail
        mailer = token_file_mailer(fake_gmail, unlinked, tmp_path)
        with pytest.raises(AuthenticationError) as info:
            mailer.send(TO, "never", "x")
        assert len(unlinked.requests) == 2
    err = info.value
    assert (err.code, err.retryable) == (535, False)
    assert "OAuth2 token" in str(err) and "https://mail.google.com/ scope" in (err.hint or "")
    assert fake_gmail.commands.count("AUTH XOAUTH2") == 2
    assert fake_gmail.xoauth2_error_answers == [b"", b""]


def test_long_tokens_fit_in_one_auth_line(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    fake_google_tokens.token_length = 2048
    with token_file_mailer(fake_gmail, fake_google_tokens, tmp_path) as mailer:
        mailer.send(TO, "long token", "x")
    assert len(fake_google_tokens.issued[0]) > 2048 and len(fake_gmail.messages) == 1


# -- refresh errors -----------------------------------------------------------------------


def test_invalid_grant_explains_the_seven_days(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    fake_google_tokens.fail_next("invalid_grant")
    mailer = token_file_mailer(fake_gmail, fake_google_tokens, tmp_path)
    with pytest.raises(TokenRefreshError) as info:
        mailer.send(TO, "Hi", "x")
    err = info.value
    assert err.retryable is False
    assert "invalid_grant: Token has been expired or revoked." in str(err)
    assert "'Testing' publishing status" in (err.hint or "") and "7 days" in (err.hint or "")
    assert not [c for c in fake_gmail.commands if c.startswith("AUTH")]


def test_unauthorized_client_explains_domain_wide_delegation(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    key = fake_google_tokens.service_account_file(tmp_path / "sa.json")
    fake_google_tokens.fail_next("unauthorized_client")
    mailer = oauth_mailer(
        fake_gmail, service_account_file=str(key), oauth_token_uri=fake_google_tokens.token_uri
    )
    with pytest.raises(TokenRefreshError) as info:
        mailer.send(TO, "Hi", "x")
    assert info.value.retryable is False
    assert "Domain-wide delegation" in (info.value.hint or "")
    assert "https://mail.google.com/" in (info.value.hint or "")


def test_invalid_client(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    t = fake_google_tokens
    mailer = oauth_mailer(
        fake_gmail,
        oauth_client_id=t.client_id,
        oauth_client_secret="wrong-secret",
        oauth_refresh_token=t.refresh_token,
        oauth_token_uri=t.token_uri,
    )
    with pytest.raises(TokenRefreshError, match="refused the OAuth2 client") as info:
        mailer.send(TO, "Hi", "x")
    assert not info.value.retryable


def test_token_endpoint_outage_is_retryable_and_does_not_sleep(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    fake_google_tokens.fail_next(500)
    with token_file_mailer(fake_gmail, fake_google_tokens, tmp_path) as mailer:
        start = time.monotonic()
        with pytest.raises(TokenRefreshError) as info:
            mailer.send(TO, "Hi", "x")
        # google-auth would sleep 1 s and 2 s between three tries inside send().
        assert time.monotonic() - start < 0.9
        assert len(fake_google_tokens.requests) == 1
        assert info.value.retryable
        assert "HTTP 500 (internal_failure)" in str(info.value)
        assert mailer.send(TO, "later", "x").accepted == (TO,)  # the next attempt refreshes


def test_token_endpoint_unreachable_is_retryable(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    with FakeGoogleTokens() as tokens:
        path = tokens.authorized_user_file(tmp_path / "token.json")
        uri = tokens.token_uri
    mailer = oauth_mailer(fake_gmail, oauth_token_file=str(path), oauth_token_uri=uri)
    with pytest.raises(TokenRefreshError) as info:
        mailer.send(TO, "Hi", "x")
    assert info.value.retryable


# -- configuration mistakes -----------------------------------------------------------------


def test_bad_token_files(tmp_path: Path) -> None:
    not_json = tmp_path / "token.json"
    not_json.write_text("{nope")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        Settings(username="me@gmail.com", oauth_token_file=str(not_json)).credentials()
    incomplete = tmp_path / "partial.json"
    incomplete.write_text('{"client_id": "x"}')
    with pytest.raises(ConfigurationError, match="lacks client_secret, refresh_token"):
        Mailer(username="me@gmail.com", oauth_token_file=str(incomplete))
    with pytest.raises(ConfigurationError, match="is not a service account key file"):
        Mailer(username="me@gmail.com", service_account_file=str(incomplete))
    with pytest.raises(ConfigurationError, match=r"oauth_token_file '/no/token\.json' does not"):
        Mailer(username="me@gmail.com", oauth_token_file="/no/token.json")
    with pytest.raises(ConfigurationError, match="needs a google-auth Credentials object"):
        OAuth2.from_credentials("token")


def test_missing_google_auth_names_the_extra() -> None:
    code = (
        "import sys\n"
        "for m in ('google', 'google.auth', 'google.oauth2'): sys.modules[m] = None\n"
        "import postbud\n"
        "try:\n"
        "    postbud.Mailer(username='me@gmail.com', oauth_client_id='i',"
        " oauth_client_secret='s', oauth_refresh_token='r')\n"
        "except postbud.errors.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == (
        "OAuth2 needs google-auth and requests: pip install 'postbud[oauth]'"
    ), result.stderr


# -- secrets --------------------------------------------------------------------------------


def test_refresh_tokens_and_client_secrets_never_leak(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = fake_google_tokens
    settings = fake_gmail.settings(
        app_password=None,
        oauth_client_id=t.client_id,
        oauth_client_secret=t.client_secret,
        oauth_refresh_token=t.refresh_token,
        oauth_token_uri=t.token_uri,
    )
    mailer = Mailer(settings)
    t.fail_next("invalid_grant")
    with pytest.raises(TokenRefreshError) as info:
        mailer.send(TO, "Hi", "x")
    rendered = "".join(
        traceback.TracebackException.from_exception(info.value, capture_locals=True).format()
    )
    texts = [
        repr(settings),
        repr(mailer),
        repr(mailer._transport),
        repr(mailer._transport.credentials),  # type: ignore[attr-defined]
        str(info.value),
        rendered,
        caplog.text,
    ]
    for text in texts:
        assert t.client_secret not in text and t.refresh_token not in text, text
    # and an access token never shows either (once the user fixed the token)
    mailer.outbox.retry_pending(clear_pauses=True)
    with mailer:
        mailer.send(TO, "ok", "x")
    assert t.issued[-1] not in repr(mailer._transport.credentials)  # type: ignore[attr-defined]


# -- the fake's XOAUTH2 dance, seen by a raw client ----------------------------------------------


def test_fake_gmail_xoauth2_failure_dance(fake_gmail: FakeGmail) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", fake_gmail.port, context=fake_gmail.ssl_context()) as s:
        s.ehlo()
        bad = base64.b64encode(f"user={fake_gmail.username}\x01auth=Bearer nope\x01\x01".encode())
        code, challenge = s.docmd("AUTH", "XOAUTH2 " + bad.decode())
        assert code == 334
        assert base64.b64decode(challenge).decode() == replies.XOAUTH2_ERROR_JSON
        assert challenge == GMAIL_XOAUTH2_CHALLENGE
        code, text = s.docmd("")
        assert code == 535 and text.startswith(b"5.7.8 Username and Password not accepted.")
        fake_gmail.accept_token("good", fake_gmail.username)
        good = base64.b64encode(f"user={fake_gmail.username}\x01auth=Bearer good\x01\x01".encode())
        assert s.docmd("AUTH", "XOAUTH2 " + good.decode()) == (235, b"2.7.0 Accepted")


def test_oauth2_is_public() -> None:
    assert postbud.OAuth2 is OAuth2
    assert OAuth2.credential == "OAuth2 token"


def failure_of(mailer: Mailer) -> BaseException:
    """The error of one send, raised from a frame that holds no secrets itself."""
    try:
        mailer.send(TO, "Hi", "x")
    except Exception as exc:
        return exc
    raise AssertionError("the send should have failed")


def rendered_chain(exc: BaseException) -> str:
    """The error as Sentry or rich would show it: every link, every frame's locals."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def test_no_secret_in_any_link_of_the_chain(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    with FakeGoogleTokens() as unlinked:  # tokens fake_gmail never accepts
        t = unlinked
        path = t.authorized_user_file(tmp_path / "token.json")
        with oauth_mailer(
            fake_gmail, oauth_token_file=str(path), oauth_token_uri=t.token_uri
        ) as mailer:
            rejected = failure_of(mailer)
            mailer.outbox.retry_pending(clear_pauses=True)  # the same refresh token next
        issued = list(t.issued)
    assert len(issued) == 2  # the first token, then the one retry
    # The endpoint is gone now: a refresh that cannot connect at all.
    with oauth_mailer(
        fake_gmail,
        oauth_client_id=t.client_id,
        oauth_client_secret=t.client_secret,
        oauth_refresh_token=t.refresh_token,
        oauth_token_uri=t.token_uri,
    ) as mailer:
        unreachable = failure_of(mailer)
    assert isinstance(rejected, AuthenticationError)
    assert isinstance(unreachable, TokenRefreshError)
    for exc in (rejected, unreachable):
        text = rendered_chain(exc)
        assert "mailer = <postbud.Mailer" in text  # locals are rendered...
        for secret in (t.client_secret, t.refresh_token, *issued):
            assert secret not in text  # ...but no secret is among them


def test_waiting_for_another_threads_refresh_respects_the_deadline(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    path = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    shared = OAuth2.from_authorized_user_file(path, token_uri=fake_google_tokens.token_uri)
    shared._lock.acquire()  # another thread is (forever) refreshing
    try:
        with fake_gmail.mailer(app_password=None, auth=shared, timeout=0.5) as mailer:
            start = time.monotonic()
            with pytest.raises(TokenRefreshError) as info:
                mailer.send(TO, "Hi", "x")
            assert time.monotonic() - start < 1.0
    finally:
        shared._lock.release()
    assert info.value.retryable
    assert "another thread" in str(info.value)
