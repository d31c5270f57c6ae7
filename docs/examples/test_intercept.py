"""Code configured for smtp.gmail.com, tested without touching the internet."""

from __future__ import annotations

import pytest

import postbud
from postbud.testing import FakeGmail


def notify_admins(subject: str, body: str) -> str:
    """Application code: settings from the environment, exactly as in production."""
    with postbud.Mailer(postbud.Settings.from_env()) as mailer:
        return mailer.send("admins@example.com", subject, body).message_id


def test_admins_are_notified(fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBUD_USERNAME", fake_gmail.username)
    monkeypatch.setenv("POSTBUD_APP_PASSWORD", fake_gmail.app_password)

    with fake_gmail.intercept():
        message_id = notify_admins("Disk almost full", "/var is 91 % full.")

    [received] = fake_gmail.messages
    assert received["Message-ID"] == message_id
    assert received.recipients == ("admins@example.com",)
    assert fake_gmail.logins == [fake_gmail.username]
