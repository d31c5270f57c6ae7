"""A welcome mail, tested against FakeGmail over real sockets and real TLS."""

from __future__ import annotations

import postbud
from postbud.testing import FakeGmail


def send_welcome(mailer: postbud.Mailer, email: str, name: str) -> postbud.SendResult:
    """The application code under test."""
    return mailer.send(
        to=f"{name} <{email}>",
        subject=f"Welcome, {name}!",
        text=f"Hi {name}, your account is ready.",
        html=f"<p>Hi {name}, your account is <b>ready</b>.</p>",
        bcc="audit@example.com",
    )


def test_welcome_mail_reaches_the_user(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as mailer:
        result = send_welcome(mailer, "ada@example.com", "Ada")

    assert result.accepted == ("ada@example.com", "audit@example.com")
    [received] = fake_gmail.messages
    assert received.recipients == ("ada@example.com", "audit@example.com")
    assert received["To"] == "Ada <ada@example.com>"
    assert received["Bcc"] is None  # Bcc recipients are in the envelope only
    assert received["Subject"] == "Welcome, Ada!"
    assert received["Message-ID"] == result.message_id
    assert "your account is ready" in (received.text or "")
    assert "<b>ready</b>" in (received.html or "")
    assert received.authenticated_as == fake_gmail.username
