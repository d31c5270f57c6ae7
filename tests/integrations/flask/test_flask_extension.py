"""flask_postbud.Postbud against FakeGmail over TLS: the factory pattern, several apps on
one extension object, and every place a Flask app sends from (a request, a CLI command,
a background thread, plain app context), blocking and through the outbox."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import postbud
from flask_postbud import ExtensionError, Mail, Message, Postbud, PostbudState
from postbud.testing import FakeGmail, FakeGoogleTokens

AppMaker = Callable[..., Flask]
Config = Callable[..., dict[str, Any]]


# -- the factory pattern ----------------------------------------------------------------


def test_init_app_registers_state_and_unset_keys(make_app: AppMaker, ext: Postbud) -> None:
    app = make_app({})
    state = app.extensions["postbud"]
    assert isinstance(state, PostbudState)
    assert state.extension is ext
    assert state.alerts is None  # the seam for the alert handler
    for key in ("POSTBUD_USERNAME", "POSTBUD_SPOOL", "POSTBUD_SUPPRESS_SEND", "POSTBUD_ALERTS_TO"):
        assert key in app.config
        assert app.config[key] is None
    assert Mail is Postbud


def test_postbud_app_argument_registers_at_once(fake_gmail: FakeGmail, config_for: Config) -> None:
    app = Flask("direct")
    app.config.update(config_for(fake_gmail))
    mail = Postbud(app)
    try:
        with app.app_context():
            result = mail.send("you@example.com", "Direct", "hello")
        assert result.accepted == ("you@example.com",)
        [received] = fake_gmail.messages
        assert received["Subject"] == "Direct"
        assert received["From"] == fake_gmail.username
    finally:
        app.extensions["postbud"].close(2)


def test_a_second_init_app_on_one_app_is_refused(make_app: AppMaker, ext: Postbud) -> None:
    app = make_app({})
    with pytest.raises(ExtensionError, match="already registered"):
        ext.init_app(app)
    with pytest.raises(ExtensionError, match="already registered"):
        Postbud().init_app(app)


def test_an_app_without_postbud_or_without_context_is_a_clear_error(ext: Postbud) -> None:
    with pytest.raises(ExtensionError, match="app_context"):
        ext.send("you@example.com", "Hi", "x")
    other = Flask("other")
    with pytest.raises(ExtensionError, match="init_app"):
        ext.send("you@example.com", "Hi", "x", app=other)


def test_the_mailer_is_made_once_per_app_and_reused(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context():
        first = ext.mailer()
        ext.send("a@example.com", "One", "1")
        ext.send("b@example.com", "Two", "2")
        assert ext.mailer() is first
    assert [m["Subject"] for m in fake_gmail.messages] == ["One", "Two"]
    assert fake_gmail.connections == 1  # one connection for both sends


def test_two_apps_on_one_extension_have_their_own_mailer(
    make_app: AppMaker,
    ext: Postbud,
    fake_gmail: FakeGmail,
    fake_gmail_starttls: FakeGmail,
    config_for: Config,
) -> None:
    ssl_app = make_app(config_for(fake_gmail, sender="Shop <postbud.test@gmail.com>"))
    tls_app = make_app(config_for(fake_gmail_starttls))
    with ssl_app.app_context():
        ext.send("you@example.com", "From the shop", "x")
    with tls_app.app_context():
        ext.send("you@example.com", "From the blog", "y")
    assert [m["Subject"] for m in fake_gmail.messages] == ["From the shop"]
    assert fake_gmail.messages[0]["From"] == "Shop <postbud.test@gmail.com>"
    assert [m["Subject"] for m in fake_gmail_starttls.messages] == ["From the blog"]
    assert fake_gmail_starttls.commands[:2] == ["EHLO", "STARTTLS"]
    ssl_mailer, tls_mailer = ext.mailer(app=ssl_app), ext.mailer(app=tls_app)
    assert ssl_mailer is not tls_mailer
    assert (ssl_mailer.settings.security, tls_mailer.settings.security) == ("ssl", "starttls")


# -- where mail is sent from ------------------------------------------------------------


def test_send_from_a_request_renders_the_templates(gmail_app: Flask, fake_gmail: FakeGmail) -> None:
    client = gmail_app.test_client()
    response = client.post("/signup", data={"email": "ann@example.com", "name": "Ann"})
    assert response.status_code == 200
    [received] = fake_gmail.messages
    assert received.recipients == ("ann@example.com",)
    assert response.text == received["Message-ID"]
    assert received.text is not None and "Hello Ann," in received.text
    assert received.html is not None and "<b>Example</b>" in received.html


def test_submit_from_a_request_goes_through_the_outbox(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    client = gmail_app.test_client()
    response = client.post("/order", data={"email": "bob@example.com", "name": "Bob"})
    assert response.status_code == 200
    assert ext.flush(5, app=gmail_app)
    [received] = fake_gmail.messages
    assert received["Message-ID"] == response.text
    assert received.html is not None and "12.50 EUR" in received.html
    assert ext.mailer(app=gmail_app).settings.spool == str(postbud_spool)


def test_send_from_a_cli_command(gmail_app: Flask, fake_gmail: FakeGmail) -> None:
    result = gmail_app.test_cli_runner().invoke(args=["send-digest", "ops@example.com"])
    assert result.exit_code == 0, result.output
    [received] = fake_gmail.messages
    assert result.output == f"sent {received['Message-ID']}\n"
    assert received["Subject"] == "Digest"


def test_send_from_a_background_thread_with_app_argument(
    gmail_app: Flask, fake_gmail: FakeGmail
) -> None:
    # The view starts a thread that has no app context and passes app=.
    response = gmail_app.test_client().post("/report", data={"email": "boss@example.com"})
    assert response.status_code == 200
    [received] = fake_gmail.messages
    assert received["Subject"] == "Report"
    assert received.text is not None and "Hello reporter," in received.text


def test_send_from_a_background_thread_with_app_context(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    errors: list[BaseException] = []

    def job() -> None:
        try:
            with gmail_app.app_context():
                ext.send(
                    "worker@example.com",
                    "From a thread",
                    template="mail/welcome",
                    context={"name": "thread", "site": "Jobs"},
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(15)
    assert not errors
    [received] = fake_gmail.messages
    assert received.html is not None and "<b>Jobs</b>" in received.html


def test_app_argument_wins_over_the_current_app(
    make_app: AppMaker,
    ext: Postbud,
    fake_gmail: FakeGmail,
    fake_gmail_starttls: FakeGmail,
    config_for: Config,
) -> None:
    one = make_app(config_for(fake_gmail))
    two = make_app(config_for(fake_gmail_starttls))
    with one.app_context():
        ext.send("you@example.com", "To two", "x", app=two)
    assert fake_gmail.messages == []
    assert [m["Subject"] for m in fake_gmail_starttls.messages] == ["To two"]


def test_connect_sends_a_batch_on_one_connection(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context(), ext.connect() as conn:
        for n in range(3):
            conn.send(Message(f"News {n}", recipients=[f"r{n}@example.com"], body="hi"))
        conn.send_message("Last", recipients=["last@example.com"], body="bye")
        assert conn.num_emails == 4
    assert [m["Subject"] for m in fake_gmail.messages] == ["News 0", "News 1", "News 2", "Last"]
    assert fake_gmail.connections == 1
    assert fake_gmail.logins == [fake_gmail.username]


def test_xoauth2_with_a_token_file(
    make_app: AppMaker,
    ext: Postbud,
    fake_gmail: FakeGmail,
    fake_google_tokens: FakeGoogleTokens,
    config_for: Config,
    tmp_path: Path,
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    app = make_app(
        config_for(
            fake_gmail,
            app_password=None,
            oauth_token_file=str(token_file),
            oauth_token_uri=fake_google_tokens.token_uri,
        )
    )
    with app.app_context():
        ext.send("you@example.com", "Via OAuth2", "x")
    assert fake_gmail.commands[:2] == ["EHLO", "AUTH XOAUTH2"]
    assert [m["Subject"] for m in fake_gmail.messages] == ["Via OAuth2"]


def test_delivery_errors_reach_the_view_caller(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    fake_gmail.bad_recipients.add("nobody@example.com")
    with gmail_app.app_context(), pytest.raises(postbud.RecipientsRefusedError):
        ext.send("nobody@example.com", "Hi", "x")
    assert fake_gmail.messages == []
