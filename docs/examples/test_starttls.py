"""Port 587 style: the password goes out only after STARTTLS."""

from __future__ import annotations

import pytest

from postbud.errors import TransportError
from postbud.testing import FakeGmail


def test_login_comes_after_starttls(fake_gmail_starttls: FakeGmail) -> None:
    with fake_gmail_starttls.mailer() as mailer:
        mailer.send("you@example.com", "Hi", "Hello")

    assert fake_gmail_starttls.commands == [
        "EHLO",
        "STARTTLS",
        "EHLO",
        "AUTH PLAIN",
        "MAIL",
        "RCPT",
        "DATA",
        "QUIT",
    ]


def test_no_login_when_starttls_is_stripped(fake_gmail_starttls: FakeGmail) -> None:
    fake_gmail_starttls.strip_starttls = True  # what a downgrade attack looks like
    with fake_gmail_starttls.mailer() as mailer, pytest.raises(TransportError) as info:
        mailer.send("you@example.com", "Hi", "Hello")

    assert "does not offer STARTTLS" in str(info.value)
    assert not info.value.retryable
    assert not any(c.startswith("AUTH") for c in fake_gmail_starttls.commands)
