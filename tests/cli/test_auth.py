"""Issue 20: `postbud auth login|status|revoke`, the whole flow without a browser or the
internet.

`login` runs in a subprocess against FakeGoogleTokens over HTTPS (its trustme CA given
through REQUESTS_CA_BUNDLE, as oauthlib refuses a plain-HTTP token endpoint); the test
reads the URL the command prints, plays the browser on the fake's consent page
(`consent()` posts Allow or Cancel), and follows Google's redirect to the command's
loopback listener. The token file it writes then sends through FakeGmail with XOAUTH2.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import clean_env, postbud, python_file

from postbud import Mailer
from postbud.testing import FakeGmail, FakeGoogleTokens

MAIL = "https://mail.google.com/"
EMAIL = "https://www.googleapis.com/auth/userinfo.email"


@pytest.fixture
def google(fake_gmail: FakeGmail) -> Iterator[FakeGoogleTokens]:
    with FakeGoogleTokens([fake_gmail], https=True) as tokens:
        yield tokens


@pytest.fixture
def env(tmp_path: Path, fake_gmail: FakeGmail, google: FakeGoogleTokens) -> dict[str, str]:
    values = fake_gmail.settings_values(timeout=5)
    connection = {
        f"POSTBUD_{name.upper()}": str(values[name])
        for name in ("host", "port", "security", "ca_file", "timeout")
    }
    env = clean_env(
        tmp_path,
        REQUESTS_CA_BUNDLE=str(google.ca_file),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        POSTBUD_OAUTH_TOKEN_URI=google.token_uri,
        **connection,
    )
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):  # a server over ssh
        env.pop(name, None)
    # The command runs only in these children: let coverage (patch = subprocess) follow.
    env.update({k: v for k, v in os.environ.items() if k.startswith("COVERAGE_PROCESS")})
    return env


@pytest.fixture
def client(google: FakeGoogleTokens, tmp_path: Path) -> Path:
    return google.client_secrets_file(tmp_path / "client_secret.json")


def default_token(tmp_path: Path) -> Path:
    return tmp_path / "config" / "postbud" / "token.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Login:
    """`postbud auth login` running, its output read as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postbud", "auth", "login", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.shown: list[str] = []

    def url(self) -> str:
        """The authorization URL it printed (what a user copies into a browser)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.shown.append(line)
            if "/o/oauth2/auth?" in line:
                return line.strip()
        raise AssertionError("no URL printed:\n" + "".join(self.shown) + self.finish()[2])

    def finish(self, stdin: str | None = None) -> tuple[int, str, str]:
        """Its exit status, all its output and its stderr, once it ended (read through
        the same buffered pipes as ``url()``: communicate() would skip what they hold)."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(60)
        proc.stdout.close()
        proc.stderr.close()
        return proc.returncode, "".join(self.shown) + out, err


def follow(location: str) -> str:
    """The browser follows Google's redirect to the command's loopback listener."""
    assert location.startswith("http://127.0.0.1:"), location
    with urllib.request.urlopen(location, timeout=10) as page:
        return str(page.read().decode())


def login(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, *args: str
) -> tuple[int, str, str]:
    """A whole login on the loopback path, the consent given."""
    running = Login(env, "--client-secrets", str(client), "--wait", "30", *args)
    assert "Google answered" in follow(google.consent(running.url()))
    return running.finish()


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def no_secrets(google: FakeGoogleTokens, *texts: str) -> None:
    for text in texts:
        assert "1//fake-" not in text and "ya29." not in text
        assert google.client_secret not in text


# -- login ------------------------------------------------------------------------------------


def test_login_writes_a_token_file_that_sends_mail(
    env: dict[str, str],
    google: FakeGoogleTokens,
    client: Path,
    fake_gmail: FakeGmail,
    tmp_path: Path,
) -> None:
    code, out, err = login(env, google, client)
    assert code == 0, out + err
    path = default_token(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    info = json.loads(path.read_text())
    assert info["type"] == "authorized_user" and info["account"] == google.user
    assert set(info["scopes"]) == {MAIL, "openid", EMAIL}
    assert info["refresh_token"].startswith("1//fake-")
    # What Google was asked for: PKCE, offline access, a fresh consent, three scopes.
    [asked] = google.authorizations
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
    assert (asked["access_type"], asked["prompt"]) == ("offline", "consent")
    assert set(asked["scope"].split()) == {MAIL, "openid", EMAIL}
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", asked["redirect_uri"])
    [exchange] = google.requests
    assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) >= 43
    # What the user reads: the address, the 7-day warning, the line to add.
    assert f"Authorised {google.user} for " in out
    assert "'Testing'" in out and "7 days" in out and "Publishing status" in out
    assert "refresh_token_expires_in" not in out  # this answer did not carry it
    assert f"POSTBUD_OAUTH_TOKEN_FILE={path}\n" in out
    assert f"POSTBUD_USERNAME={google.user}\n" in out
    assert "no display here" in out  # no $DISPLAY: the URL printed, no browser started
    no_secrets(google, out, err)
    assert fake_gmail.messages == []  # nothing sent without --send-test
    # The file is what postbud sends with: XOAUTH2 with the access token it holds.
    settings = fake_gmail.settings(
        app_password=None, oauth_token_file=str(path), oauth_token_uri=google.token_uri
    )
    with Mailer(settings) as mailer:
        mailer.send("you@example.com", "Hello", "Sent with the token of postbud auth login.")
    assert "AUTH XOAUTH2" in fake_gmail.commands
    assert fake_gmail.logins == [google.user]
    assert [m.message["Subject"] for m in fake_gmail.messages] == ["Hello"]


def test_login_opens_the_browser_where_there_is_a_display(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n"
    )
    browser.chmod(0o755)
    running = Login(dict(env, DISPLAY=":99", BROWSER=str(browser)), "--client-secrets", str(client))
    url = running.url()
    assert opened.read_text() == url  # webbrowser ran $BROWSER with the URL
    follow(google.consent(url))
    code, out, err = running.finish()
    assert code == 0, out + err
    assert "A browser opens Google's consent page" in out
    assert default_token(tmp_path).exists()


def test_login_headless_with_port_prints_the_ssh_line(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    port = free_port()
    running = Login(env, "--client-secrets", str(client), "--port", str(port))
    url = running.url()
    assert query_of(url)["redirect_uri"] == f"http://127.0.0.1:{port}/"
    before = "".join(running.shown)  # the tunnel is set up before the URL is opened
    assert re.search(rf"^    ssh -L {port}:localhost:{port} \S+@\S+$", before, re.M), before
    follow(google.consent(url))  # through the tunnel, as the laptop's browser would
    code, out, err = running.finish()
    assert code == 0, out + err
    assert default_token(tmp_path).exists()


def test_login_by_pasting_the_redirected_address(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    running = Login(env, "--client-secrets", str(client), "--paste", "--wait", "30")
    location = google.consent(running.url())
    with pytest.raises(OSError):  # nothing listens: the browser shows an error page
        follow(location)
    code, out, err = running.finish(location + "\n")
    assert code == 0, out + err
    assert "Copy the whole address" in out
    assert json.loads(default_token(tmp_path).read_text())["account"] == google.user


def test_login_refuses_a_pasted_address_that_is_not_the_redirect(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    running = Login(env, "--client-secrets", str(client), "--paste")
    google.consent(running.url())
    code, _, err = running.finish("https://example.com/?code=stolen\n")
    assert code == 1
    assert "not the address Google sent the browser to" in err
    assert not default_token(tmp_path).exists()


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("web", ["'Web application'", "'Desktop app'"]),
        ("service_account", ["service account key", "POSTBUD_SERVICE_ACCOUNT_FILE"]),
        ("authorized_user", ["already a token file", "POSTBUD_OAUTH_TOKEN_FILE"]),
    ],
)
def test_login_refuses_a_client_of_the_wrong_type(
    env: dict[str, str], google: FakeGoogleTokens, tmp_path: Path, kind: str, needles: list[str]
) -> None:
    path = tmp_path / "client.json"
    if kind == "web":
        google.client_secrets_file(path, kind="web")
    elif kind == "service_account":
        google.service_account_file(path)
    else:
        google.authorized_user_file(path)
    result = postbud(env, "auth", "login", "--client-secrets", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("postbud: ") and result.stderr.count("\n") == 1
    for needle in needles:
        assert needle in result.stderr
    assert "Desktop app" in result.stderr
    assert google.authorizations == [] and "http" not in result.stdout  # no browser step


def test_a_refused_consent_writes_nothing(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    running = Login(env, "--client-secrets", str(client))
    follow(google.consent(running.url(), allow=False))
    code, _, err = running.finish()
    assert code == 1
    assert "Access was refused on Google's consent page (access_denied)" in err
    assert "Traceback" not in err
    assert not default_token(tmp_path).exists() and google.requests == []


def test_an_unticked_gmail_box_is_explained(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    running = Login(env, "--client-secrets", str(client))
    follow(google.consent(running.url(), grant=["openid", EMAIL]))
    code, _, err = running.finish()
    assert code == 1
    assert "did not grant https://mail.google.com/" in err and "tick it" in err
    assert not default_token(tmp_path).exists()


def test_login_gives_up_after_wait(env: dict[str, str], client: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result = postbud(env, "auth", "login", "--client-secrets", str(client), "--wait", "1")
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert "No answer from the browser within 1 s: nothing was written" in result.stderr
    assert not default_token(tmp_path).exists()


def test_login_never_replaces_a_token_file_without_force(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path
) -> None:
    path = tmp_path / "token.json"
    path.write_text("{}")
    path.chmod(0o644)
    result = postbud(
        env, "auth", "login", "--client-secrets", str(client), "--token-file", str(path)
    )
    assert result.returncode == 2
    assert "exists: --force replaces it" in result.stderr
    assert path.read_text() == "{}" and google.authorizations == []  # asked before the browser
    google.refresh_token_lifetime = 604799  # an app in "Testing"
    code, out, err = login(env, google, client, "--token-file", str(path), "--force")
    assert code == 0, out + err
    assert json.loads(path.read_text())["account"] == google.user
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the new file, not the old mode
    assert "refresh_token_expires_in=604799 (this token ends in 7.0 days)" in out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".token")] == []


def test_send_test_sends_one_message(
    env: dict[str, str], google: FakeGoogleTokens, client: Path, fake_gmail: FakeGmail
) -> None:
    code, out, err = login(env, google, client, "--send-test", "me@example.com")
    assert code == 0, out + err
    assert "Sent a test message to me@example.com" in out
    [message] = fake_gmail.messages
    assert list(message.recipients) == ["me@example.com"]
    assert message.message["Subject"] == "postbud auth login"
    assert fake_gmail.logins == [google.user]


# -- status and revoke ------------------------------------------------------------------------


@pytest.fixture
def token_file(env: dict[str, str], google: FakeGoogleTokens, client: Path, tmp_path: Path) -> Path:
    code, out, err = login(env, google, client)
    assert code == 0, out + err
    google.requests.clear()
    return default_token(tmp_path)


def test_status_of_a_working_token(
    env: dict[str, str], google: FakeGoogleTokens, token_file: Path
) -> None:
    before = token_file.read_text()
    result = postbud(env, "auth", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"file      {token_file} (mode 0600: only you can read it)" in out
    assert f"account   {google.user}" in out
    assert "refresh   works" in out and re.search(r"access    new token .* \(in 60 min\)", out)
    assert f"google    the token is for {google.user}: " in out and MAIL in out
    for reason in ("7 days", "6 months", "password changed", "more than 100 refresh tokens"):
        assert reason in out
    assert [r["grant_type"] for r in google.requests] == ["refresh_token"]  # one refresh
    assert token_file.read_text() == before  # status writes nothing
    assert result.stderr == ""
    no_secrets(google, out)


def test_status_warns_of_a_file_others_can_read(env: dict[str, str], token_file: Path) -> None:
    token_file.chmod(0o644)
    result = postbud(env, "auth", "status", "--token-file", str(token_file))
    assert result.returncode == 0
    assert "(mode 0644)" in result.stdout
    assert f"group or others may read {token_file}: chmod 600 {token_file}" in result.stderr


def test_status_of_a_revoked_token_says_why_tokens_die(
    env: dict[str, str], google: FakeGoogleTokens, token_file: Path
) -> None:
    refresh = json.loads(token_file.read_text())["refresh_token"]
    body = urllib.parse.urlencode({"token": refresh}).encode()
    import ssl

    context = ssl.create_default_context(cafile=google.ca_file)
    with urllib.request.urlopen(google.revoke_uri, body, timeout=10, context=context) as answer:
        assert answer.status == 200  # the user removed access in their Google account
    result = postbud(env, "auth", "status")
    assert result.returncode == 1
    assert "refresh   FAILED" in result.stdout and "7 days" in result.stdout
    assert "the refresh token does not work" in result.stderr and "invalid_grant" in result.stderr
    assert "Traceback" not in result.stderr


def test_revoke_ends_the_token_at_google_and_removes_the_file(
    env: dict[str, str], google: FakeGoogleTokens, token_file: Path, fake_gmail: FakeGmail
) -> None:
    refresh = json.loads(token_file.read_text())["refresh_token"]
    result = postbud(env, "auth", "revoke")
    assert result.returncode == 0, result.stderr
    assert f"Revoked the token of {google.user} at Google; removed {token_file}." in result.stdout
    assert google.revoked == [refresh]
    assert not token_file.exists()
    again = postbud(env, "auth", "revoke")
    assert again.returncode == 2 and "There is no token file at" in again.stderr


def test_revoke_keeps_the_file_when_google_cannot_be_reached(
    env: dict[str, str], token_file: Path
) -> None:
    port = free_port()  # nothing listens there
    result = postbud(env, "auth", "revoke", "--oauth-token-uri", f"https://127.0.0.1:{port}/token")
    assert result.returncode == 75
    assert f"Could not reach https://127.0.0.1:{port}/revoke" in result.stderr
    assert "is kept" in result.stderr and token_file.exists()


# -- the command line -------------------------------------------------------------------------


def test_auth_needs_an_action_and_says_what_login_asks(env: dict[str, str]) -> None:
    result = postbud(env, "auth")
    assert result.returncode == 2
    assert "an action is required: login, status or revoke" in result.stderr
    text = postbud(env, "auth", "login", "--help").stdout
    assert "'openid email'" in text and "https://mail.google.com/" in text
    assert "--paste" in text and "--port PORT" in text and "--wait SECONDS" in text


def test_a_missing_extra_is_named_with_the_pip_command(env: dict[str, str], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['google_auth_oauthlib'] = None  # not installed\n"
        "from postbud.cli import main\n"
        "sys.exit(main(['auth', 'status']))\n"
    )
    result = python_file(env, tmp_path / "missing_extra.py", code)
    assert result.returncode == 2
    assert result.stderr == (
        "postbud: auth needs the oauth extra (google-auth-oauthlib not installed): "
        "pip install 'postbud[oauth]'\n"
    )


def test_check_explains_domain_wide_delegation_for_a_service_account(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    key = fake_google_tokens.service_account_file(tmp_path / "sa.json")
    values = fake_gmail.settings_values(app_password=None, timeout=5)
    env = clean_env(
        tmp_path,
        POSTBUD_SERVICE_ACCOUNT_FILE=str(key),
        POSTBUD_OAUTH_TOKEN_URI=fake_google_tokens.token_uri,
        **{f"POSTBUD_{k.upper()}": str(v) for k, v in values.items() if v is not None},
    )
    fake_google_tokens.fail_next("unauthorized_client")
    result = postbud(env, "check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL token" in result.stdout and "unauthorized_client" in result.stdout
    assert "Domain-wide delegation" in result.stdout and MAIL in result.stdout
    assert "1" * 21 in result.stdout  # the client ID to paste into the Admin console
    assert os.path.exists(key)
