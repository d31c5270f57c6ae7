"""No password ever appears in an error, a log line, a repr or a traceback."""

from __future__ import annotations

import base64
import logging
import pickle
import traceback

import pytest

import postbud
from postbud import AppPassword, Mailer, Secret, Settings
from postbud.errors import AuthenticationError, ConfigurationError
from postbud.testing import FakeGmail

WRONG = "zyxwvutsrqponmlk"


def test_reprs_are_redacted(fake_gmail: FakeGmail) -> None:
    password = fake_gmail.app_password
    settings = fake_gmail.settings()
    mailer = Mailer(settings)
    texts = [
        repr(settings),
        str(settings),
        repr(mailer),
        repr(mailer._transport),
        repr(AppPassword(password)),
        repr(Secret(password)),
        str(Secret(password)),
        repr(settings.app_password),
    ]
    for text in texts:
        assert password not in text and "".join(password.split()) not in text, text
    assert "********" in repr(settings)


def test_secret_behaves_like_a_value() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert hash(Secret("a")) == hash(Secret("a"))
    assert pickle.loads(pickle.dumps(Secret("a"))).reveal() == "a"
    assert not Secret("")


def test_failed_login_leaks_nothing(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    mailer = fake_gmail.mailer(app_password=WRONG)
    with pytest.raises(AuthenticationError) as info:
        mailer.send("you@example.com", "Hi", "x")
    err = info.value
    # The whole chain, rendered as a traceback printer that shows locals would.
    rendered = "".join(
        traceback.TracebackException.from_exception(err, capture_locals=True).format()
    )
    out = capsys.readouterr()
    plain = base64.b64encode(f"\0{fake_gmail.username}\0{WRONG}".encode()).decode()
    for text in (
        str(err),
        repr(err),
        err.message,
        err.hint or "",
        rendered,
        caplog.text,
        out.out,
        out.err,
    ):
        assert WRONG not in text
        assert plain not in text  # the AUTH PLAIN line
    assert "535" in rendered


def test_config_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(username="me", app_password=WRONG)
    assert WRONG not in str(info.value)
    with pytest.raises(ConfigurationError) as two:
        Settings(
            username="me@gmail.com",
            app_password=WRONG,
            oauth_refresh_token="rt-SECRET",
            oauth_client_id="id",
            oauth_client_secret="cs-SECRET",
        )
    assert "SECRET" not in str(two.value) and WRONG not in str(two.value)


def test_app_password_must_be_printable_ascii() -> None:
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        AppPassword("pässwörd")
    with pytest.raises(ConfigurationError, match="empty"):
        AppPassword("")
    assert AppPassword("abcd efgh") == AppPassword("abcdefgh")


def test_auth_must_be_a_credentials_object() -> None:
    with pytest.raises(ConfigurationError, match="auth must be a credentials object"):
        Mailer(username="me@gmail.com", auth="hunter2")  # type: ignore[arg-type]
    assert isinstance(AppPassword("x"), postbud.Credentials)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("X-CSRFToken", True),
        ("csrf_token", True),
        ("card_number", True),
        ("card-cvc", True),
        ("otp", True),
        ("new_password", True),
        ("iban", True),
        ("author", False),  # auth only as a whole part of a name
        ("User-Agent", False),
        ("Accept-Language", False),
        ("pinned", False),
        ("discard", False),
    ],
)
def test_secret_name_knows_headers_and_form_fields(name: str, secret: bool) -> None:
    from postbud.alerts import secret_name

    assert secret_name(name) is secret
