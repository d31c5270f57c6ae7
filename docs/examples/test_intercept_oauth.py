"""intercept() covers SMTP only: an OAuth2 app also needs the fake token endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import postbud
from postbud.testing import FakeGmail, FakeGoogleTokens


def test_an_oauth2_app_configured_for_gmail(
    fake_gmail: FakeGmail,
    fake_google_tokens: FakeGoogleTokens,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("POSTBUD_USERNAME", fake_gmail.username)
    # What intercept() does not do: the token endpoint, and a token file it issued.
    monkeypatch.setenv("POSTBUD_OAUTH_TOKEN_URI", fake_google_tokens.token_uri)
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    monkeypatch.setenv("POSTBUD_OAUTH_TOKEN_FILE", str(token_file))

    with fake_gmail.intercept(), postbud.Mailer(postbud.Settings.from_env()) as mailer:
        mailer.send("admins@example.com", "Disk almost full", "/var is 91 % full.")

    assert "AUTH XOAUTH2" in fake_gmail.commands
    assert len(fake_google_tokens.requests) == 1
    assert [m["Subject"] for m in fake_gmail.messages] == ["Disk almost full"]
