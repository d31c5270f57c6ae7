"""Tests of the shop's mail, as a project writes them (pytest, the postbud plugin loaded).

With TESTING on, postbud suppresses sending: nothing leaves the process, and
``record_messages()`` shows what would have gone out. The last test sends for real, to a
FakeGmail over TLS, through the outbox.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from shop import create_app, jobs, postbud

from postbud.testing import FakeGmail


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app({"TESTING": True})  # no app password needed: nothing is sent
    yield app
    app.extensions["postbud"].close()


def test_signup_mails_a_welcome(app: Flask) -> None:
    with postbud.record_messages() as outbox:
        response = app.test_client().post(
            "/signup", data={"email": "ann@example.com", "name": "Ann"}
        )
    assert response.status_code == 200
    [welcome] = outbox
    assert welcome.subject == "Welcome to My Shop"
    assert welcome.recipients == ["ann@example.com"]
    assert welcome.sender == "My Shop <me@gmail.com>"
    assert "Hello Ann," in (welcome.body or "")


def test_a_name_is_escaped_in_the_html_part(app: Flask) -> None:
    with postbud.record_messages() as outbox:
        app.test_client().post("/signup", data={"email": "x@example.com", "name": "<script>"})
    [welcome] = outbox
    assert "Hello &lt;script&gt;," in (welcome.html or "")  # not <script>


def test_a_report_from_a_thread(app: Flask) -> None:
    with postbud.record_messages() as outbox:
        with app.test_request_context():
            thread = jobs.start_report("boss@example.com")
        thread.join(10)
    assert [m.subject for m in outbox] == ["Your weekly report"]


def test_the_receipt_reaches_gmail(fake_gmail: FakeGmail) -> None:
    # The FakeGmail's account, address and CA as POSTBUD_* keys; TESTING stays off.
    gmail = {f"POSTBUD_{k.upper()}": v for k, v in fake_gmail.settings_values().items()}
    app = create_app(gmail)
    try:
        response = app.test_client().post("/orders/42/receipt", data={"email": "bob@example.com"})
        assert postbud.flush(10, app=app)  # wait for the outbox's worker
    finally:
        app.extensions["postbud"].close()
    [received] = fake_gmail.messages
    assert received["Message-ID"] == response.text
    assert received["Subject"] == "Your receipt for order 42"
    [receipt] = received.message.iter_attachments()
    assert receipt.get_filename() == "receipt-42.csv"
