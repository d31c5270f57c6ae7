"""Testing code that sends with OAuth2: FakeGmail plus the fake Google token endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import postbud
from postbud.testing import FakeGmail, FakeGoogleTokens


def test_token_file_mailer_sends(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,  # google-auth ignores the file's
    )
    with postbud.Mailer(settings) as mailer:
        mailer.send("you@example.com", "Hello", "Sent with XOAUTH2.")
        mailer.send("you@example.com", "Again", "Same token, no second refresh.")

    assert "AUTH XOAUTH2" in fake_gmail.commands
    assert len(fake_google_tokens.requests) == 1
    assert [m["Subject"] for m in fake_gmail.messages] == ["Hello", "Again"]


def test_revoked_refresh_token_is_explained(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    fake_google_tokens.fail_next("invalid_grant")
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,
    )
    with (
        postbud.Mailer(settings) as mailer,
        pytest.raises(postbud.errors.TokenRefreshError) as info,
    ):
        mailer.send("you@example.com", "Hello", "x")

    assert not info.value.retryable  # retrying cannot fix a revoked token
    assert "7 days" in (info.value.hint or "")
