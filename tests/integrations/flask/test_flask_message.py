"""flask_postbud.Message, Flask-Mail's shape: what it translates into and what it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

import postbud
from flask_postbud import Attachment, Message, Postbud
from flask_postbud import _state as state_module
from postbud.testing import FakeGmail

AppMaker = Callable[..., Flask]


def test_tuples_date_headers_and_inline_images_arrive(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    msg = Message(
        "Report",
        recipients=[("Zoë Example", "zoe@example.com")],
        html='<p>Chart: <img src="cid:chart"></p>',
        sender=("Reports", fake_gmail.username),
        date=0.0,
        extra_headers={"X-Job": "nightly"},
    )
    msg.attach("chart.png", "image/png", b"\x89PNG...", "inline", headers={"Content-ID": "<chart>"})
    msg.attach("data.csv", "text/csv", "a,b\n1,2\n")
    with gmail_app.app_context():
        result = ext.send(msg)
    assert msg.msgId == result.message_id
    [received] = fake_gmail.messages
    assert received["To"] == "Zoë Example <zoe@example.com>"
    assert received["From"] == f"Reports <{fake_gmail.username}>"
    assert received["Date"] == "Thu, 01 Jan 1970 00:00:00 -0000"
    assert received["X-Job"] == "nightly"
    related = next(p for p in received.message.walk() if p.get_content_type() == "image/png")
    assert related["Content-ID"] == "<chart>"
    [csv] = received.message.iter_attachments()
    assert (csv.get_filename(), csv.get_content()) == ("data.csv", "a,b\n1,2\n")


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Message("x", ["a@example.com"], alts={"markdown": "*x*"}), "not markdown"),
        (Message("x", ["a@example.com"], mail_options=["SMTPUTF8"]), "mail_options"),
        (Message("x", [], body="nobody"), "No recipient"),
        (Message("x", [("A", "not an address")]), "not an address"),
        (
            Message("x", ["a@example.com"], attachments=[Attachment(None, None, b"x")]),
            "needs a filename",
        ),
        (
            Message("x", ["a@example.com"], attachments=[Attachment("a", None, b"x", "inline")]),
            "Content-ID",
        ),
        (Message("Two\nlines", ["a@example.com"]), "subject"),
    ],
)
def test_what_postbud_does_not_send_is_refused_by_name(
    make_app: AppMaker, ext: Postbud, message: Message, error: str
) -> None:
    app = make_app({"TESTING": True})
    with app.app_context(), pytest.raises(postbud.InvalidMessageError, match=error):
        ext.send(message)


def test_send_message_takes_the_message_alone(make_app: AppMaker, ext: Postbud) -> None:
    app = make_app({"TESTING": True})
    with app.app_context(), pytest.raises(TypeError, match="Message alone"):
        ext.send(Message("x", ["a@example.com"]), "subject")


def test_the_same_message_sent_twice_keeps_its_message_id(make_app: AppMaker, ext: Postbud) -> None:
    app = make_app({"TESTING": True})
    msg = Message("x", ["a@example.com"], body="y")
    with ext.record_messages() as outbox, app.app_context():
        ext.send(msg)
        ext.send(msg)
    first, second = outbox
    assert first.msgId == second.msgId == msg.msgId
    assert first is not msg  # a copy: changing msg later does not change the record


def test_the_exit_hook_closes_settled_mailers(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context():
        ext.send("you@example.com", "Hi", "x")
    assert "QUIT" not in fake_gmail.commands
    state_module._at_exit()
    assert fake_gmail.commands[-1] == "QUIT"
