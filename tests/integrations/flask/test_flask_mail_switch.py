"""The one-line switch: ``flask_mail_app.py``, a Flask-Mail app, runs as written with
Flask-Mail and with its import line changed to flask_postbud, against the same FakeGmail,
and its mail arrives the same (postbud's over verified TLS)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import flask_mail
import pytest
from flask import Flask

import flask_postbud
import postbud
from postbud.testing import FakeGmail

Loader = Callable[..., ModuleType]

FLASK_MAIL = "from flask_mail import Mail, Message"
POSTBUD = "from flask_postbud import Mail, Message"


def mail_config(fake: FakeGmail) -> dict[str, Any]:
    """The Flask-Mail app's config; postbud also needs to trust the fake's CA (Flask-Mail
    verifies no certificate at all, so it needs nothing)."""
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": fake.port,
        "MAIL_USE_SSL": True,
        "MAIL_USERNAME": fake.username,
        "MAIL_PASSWORD": fake.app_password,
        "MAIL_DEFAULT_SENDER": ("Events", fake.username),
        "POSTBUD_CA_FILE": fake.ca_file,
    }


@pytest.fixture(params=["flask_mail", "flask_postbud"])
def mail_app(request: pytest.FixtureRequest, load_module: Loader) -> ModuleType:
    """The Flask-Mail app module, as written or switched by its import line."""
    switch = None if request.param == "flask_mail" else (FLASK_MAIL, POSTBUD)
    return load_module("flask_mail_app", switch)


def make(module: ModuleType, config: dict[str, Any], made: list[Flask]) -> Flask:
    app = module.create_app(config)
    assert isinstance(app, Flask)
    made.append(app)
    return app


def test_the_import_line_decides(mail_app: ModuleType, request: pytest.FixtureRequest) -> None:
    expected = flask_mail.Mail if "flask_mail]" in request.node.name else flask_postbud.Postbud
    assert type(mail_app.mail) is expected


def test_a_message_with_everything_arrives_the_same(
    mail_app: ModuleType, fake_gmail: FakeGmail, apps: list[Flask]
) -> None:
    app = make(mail_app, mail_config(fake_gmail), apps)
    response = app.test_client().post("/invite")
    assert response.status_code == 200
    [received] = fake_gmail.messages
    assert received["Subject"] == "Invitation"
    assert received["From"] == f"Events <{fake_gmail.username}>"
    assert received["To"] == "Ann Example <ann@example.com>"
    assert received["Cc"] == "cc@example.com"
    assert received["Reply-To"] == "events@example.com"
    assert received["Bcc"] is None
    assert set(received.recipients) == {"ann@example.com", "cc@example.com", "hidden@example.com"}
    assert received.text is not None and received.text.strip() == "Join us on Friday."
    assert received.html is not None and "<b>Friday</b>" in received.html
    [attachment] = received.message.iter_attachments()
    assert attachment.get_filename() == "agenda.txt"
    assert attachment.get_content() == "18:00 drinks\n"


def test_a_batch_on_one_connection(
    mail_app: ModuleType, fake_gmail: FakeGmail, apps: list[Flask]
) -> None:
    app = make(mail_app, mail_config(fake_gmail), apps)
    to = ["a@example.com", "b@example.com", "c@example.com"]
    response = app.test_client().post("/newsletter", data={"to": to})
    assert response.status_code == 200
    assert [m.recipients for m in fake_gmail.messages] == [(a,) for a in to]
    assert fake_gmail.connections == 1
    assert fake_gmail.logins == [fake_gmail.username]


def test_record_messages_under_testing(
    mail_app: ModuleType, fake_gmail: FakeGmail, apps: list[Flask]
) -> None:
    app = make(mail_app, {**mail_config(fake_gmail), "TESTING": True}, apps)
    client = app.test_client()
    with mail_app.mail.record_messages() as outbox:
        client.post("/invite")
        client.post("/ping")
    assert fake_gmail.messages == []
    invite, ping = outbox
    assert invite.subject == "Invitation"
    assert invite.recipients == [("Ann Example", "ann@example.com")]
    assert invite.body == "Join us on Friday."
    assert invite.html == "<p>Join us on <b>Friday</b>.</p>"
    assert invite.sender == f"Events <{fake_gmail.username}>"
    assert invite.bcc == ["hidden@example.com"]
    assert [a.filename for a in invite.attachments] == ["agenda.txt"]
    assert (ping.subject, ping.recipients, ping.body) == ("Ping", ["ops@example.com"], "pong")


def test_the_switched_app_verifies_tls(
    fake_gmail: FakeGmail, apps: list[Flask], load_module: Loader
) -> None:
    # Flask-Mail talks to a server whose certificate nobody checked; postbud does not.
    module = load_module("flask_mail_app", (FLASK_MAIL, POSTBUD))
    config = {**mail_config(fake_gmail), "PROPAGATE_EXCEPTIONS": True}
    del config["POSTBUD_CA_FILE"]
    app = make(module, config, apps)
    with pytest.raises(postbud.TransportError, match="certificate"):
        app.test_client().post("/ping")
    assert fake_gmail.messages == []
