"""Suppression (``POSTBUD_SUPPRESS_SEND``, default ``app.testing``) and ``record_messages``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import postbud
from flask_postbud import Message, Postbud
from postbud.testing import FakeGmail

AppMaker = Callable[..., Flask]
Config = Callable[..., dict[str, Any]]


def test_testing_set_after_the_app_was_built_suppresses_and_records(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    gmail_app.config["TESTING"] = True  # as tests do, after the factory
    client = gmail_app.test_client()
    with ext.record_messages() as outbox:
        response = client.post("/signup", data={"email": "ann@example.com", "name": "Ann"})
    assert response.status_code == 200
    assert fake_gmail.messages == []
    assert fake_gmail.connections == 0  # nothing left the process
    [sent] = outbox
    assert sent.subject == "Welcome"
    assert sent.recipients == ["ann@example.com"]
    assert sent.body is not None and "Hello Ann," in sent.body
    assert sent.html is not None and "<b>Example</b>" in sent.html
    assert sent.sender == fake_gmail.username
    assert sent.msgId == response.text
    assert sent.message["Message-ID"] == response.text


def test_submit_under_suppression_queues_nothing(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    gmail_app.config["TESTING"] = True
    with ext.record_messages() as outbox:
        response = gmail_app.test_client().post("/order", data={"email": "b@x.com", "name": "B"})
    assert [m.msgId for m in outbox] == [response.text]
    assert ext.flush(0, app=gmail_app)
    with gmail_app.app_context():
        assert ext.mailer().stats()["submitted"] == 0
    assert fake_gmail.messages == []


def test_record_messages_also_records_real_sends(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with ext.record_messages() as outbox, gmail_app.app_context():
        result = ext.send(
            [("Ann Example", "ann@example.com")],
            "Real",
            "body",
            cc="cc@example.com",
            attachments=("notes.txt", b"hello"),
        )
    [received] = fake_gmail.messages
    [sent] = outbox
    assert sent.msgId == result.message_id == received["Message-ID"]
    assert sent.recipients == [("Ann Example", "ann@example.com")]
    assert sent.cc == ["cc@example.com"]
    assert received["To"] == "Ann Example <ann@example.com>"
    [attachment] = sent.attachments
    assert (attachment.filename, attachment.content_type, attachment.data) == (
        "notes.txt",
        "text/plain",
        b"hello",
    )
    assert sent.data is not None and sent.message["Message-ID"] == received["Message-ID"]


def test_recording_stops_with_the_block_and_nests(gmail_app: Flask, ext: Postbud) -> None:
    gmail_app.config["TESTING"] = True
    with gmail_app.app_context():
        with ext.record_messages() as outer:
            ext.send("a@example.com", "One", "1")
            with ext.record_messages() as inner:
                ext.send("b@example.com", "Two", "2")
        ext.send("c@example.com", "Three", "3")
    assert [m.subject for m in outer] == ["One", "Two"]
    assert [m.subject for m in inner] == ["Two"]


def test_suppressed_without_credentials_is_not_an_error(
    make_app: AppMaker, ext: Postbud, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app({"TESTING": True, "MAIL_DEFAULT_SENDER": ("Shop", "shop@example.com")})
    with ext.record_messages() as outbox, app.app_context():
        ext.send("you@example.com", "Hi", "x")
        ext.send(Message("Flask-Mail style", recipients=["you@example.com"], body="y"))
    assert [m.sender for m in outbox] == ["Shop <shop@example.com>"] * 2
    assert outbox[0].message["From"] == "Shop <shop@example.com>"
    # Once suppression is off, the missing credentials are an error, naming the key.
    app.config["TESTING"] = False
    with app.app_context(), pytest.raises(postbud.ConfigurationError, match="POSTBUD_USERNAME"):
        ext.send("you@example.com", "Hi", "x")


def test_suppressed_with_only_a_username_at_init_app(make_app: AppMaker, ext: Postbud) -> None:
    # A Flask-Mail test config often has MAIL_USERNAME but no password.
    app = make_app({"TESTING": True, "MAIL_USERNAME": "me@example.com"})
    with ext.record_messages() as outbox, app.app_context():
        ext.send("you@example.com", "Hi", "x")
    assert outbox[0].message["From"] == "me@example.com"


def test_suppressed_still_validates_the_message_and_the_rest_of_the_config(
    make_app: AppMaker, ext: Postbud
) -> None:
    app = make_app({"TESTING": True})
    with app.app_context(), pytest.raises(postbud.InvalidMessageError):
        ext.send("not an address", "Hi", "x")
    app = make_app({"TESTING": True, "POSTBUD_PORT": "many"})
    with app.app_context(), pytest.raises(postbud.ConfigurationError, match="POSTBUD_PORT"):
        ext.send("you@example.com", "Hi", "x")


def test_suppress_send_overrides_testing_and_is_read_at_send_time(
    make_app: AppMaker, ext: Postbud, fake_gmail: FakeGmail, config_for: Config
) -> None:
    app = make_app({**config_for(fake_gmail), "TESTING": True, "POSTBUD_SUPPRESS_SEND": False})
    with app.app_context():
        ext.send("you@example.com", "Sent although testing", "x")
        app.config["POSTBUD_SUPPRESS_SEND"] = True
        ext.send("you@example.com", "Suppressed", "x")
    assert [m["Subject"] for m in fake_gmail.messages] == ["Sent although testing"]


def test_flask_mails_suppress_key_is_read(
    make_app: AppMaker, ext: Postbud, fake_gmail: FakeGmail, config_for: Config
) -> None:
    app = make_app({**config_for(fake_gmail), "MAIL_SUPPRESS_SEND": True})
    with app.app_context():
        ext.send("you@example.com", "Hi", "x")
    assert fake_gmail.messages == []


def test_suppression_leaves_mail_in_the_spool_alone(
    make_app: AppMaker,
    ext: Postbud,
    fake_gmail: FakeGmail,
    config_for: Config,
    postbud_spool: Path,
) -> None:
    # Mail a killed process left in the spool is not delivered by a suppressed app.
    fake_gmail.fail_next("MAIL", "421 4.7.0 Try again later", times=50)
    with fake_gmail.mailer(spool=str(postbud_spool), exit_timeout=0) as left:
        left.submit("you@example.com", "Left behind", "x")
        left.flush(0.5)
    fake_gmail.reset()
    app = make_app({**config_for(fake_gmail), "TESTING": True})
    with app.app_context():
        ext.send("you@example.com", "Suppressed", "x")
    assert fake_gmail.connections == 0


def test_a_non_boolean_suppress_key_names_it(make_app: AppMaker, ext: Postbud) -> None:
    app = make_app({"POSTBUD_SUPPRESS_SEND": "yes"})
    with app.app_context(), pytest.raises(postbud.ConfigurationError) as caught:
        ext.send("you@example.com", "Hi", "x")
    assert str(caught.value) == "POSTBUD_SUPPRESS_SEND must be True or False, got 'yes'."
