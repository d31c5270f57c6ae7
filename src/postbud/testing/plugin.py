"""pytest plugin: ``pytest_plugins = ["postbud.testing.plugin"]`` in your conftest.py.

Fixtures:
    fake_gmail: a ``FakeGmail`` with implicit TLS (like port 465), one per session,
        reset before each test.
    fake_gmail_starttls: the same with STARTTLS (like port 587).
    fake_google_tokens: a ``FakeGoogleTokens`` endpoint whose access tokens both fakes
        accept for XOAUTH2 (needs the oauth extra too), reset before each test.
    postbud_spool: the path ``POSTBUD_SPOOL`` points at for this test.

Every test also gets ``POSTBUD_SPOOL`` pointed at a fresh temporary file, so tests
never touch the user's real outbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import FakeGmail, FakeGoogleTokens

__all__ = ["fake_gmail", "fake_gmail_starttls", "fake_google_tokens", "postbud_spool"]

_numbers = itertools.count()


@pytest.fixture(scope="session")
def _postbud_fake_gmail_ssl() -> Iterator[FakeGmail]:
    with FakeGmail("ssl") as fake:
        yield fake


@pytest.fixture(scope="session")
def _postbud_fake_gmail_starttls() -> Iterator[FakeGmail]:
    with FakeGmail("starttls") as fake:
        yield fake


@pytest.fixture
def fake_gmail(_postbud_fake_gmail_ssl: FakeGmail) -> Iterator[FakeGmail]:
    """A FakeGmail speaking implicit TLS (port 465 style), reset for this test."""
    _postbud_fake_gmail_ssl.reset()
    yield _postbud_fake_gmail_ssl
    _postbud_fake_gmail_ssl.reset()


@pytest.fixture
def fake_gmail_starttls(_postbud_fake_gmail_starttls: FakeGmail) -> Iterator[FakeGmail]:
    """A FakeGmail that requires STARTTLS (port 587 style), reset for this test."""
    _postbud_fake_gmail_starttls.reset()
    yield _postbud_fake_gmail_starttls
    _postbud_fake_gmail_starttls.reset()


@pytest.fixture(scope="session")
def _postbud_fake_google_tokens(
    _postbud_fake_gmail_ssl: FakeGmail, _postbud_fake_gmail_starttls: FakeGmail
) -> Iterator[FakeGoogleTokens]:
    with FakeGoogleTokens([_postbud_fake_gmail_ssl, _postbud_fake_gmail_starttls]) as tokens:
        yield tokens


@pytest.fixture
def fake_google_tokens(
    _postbud_fake_google_tokens: FakeGoogleTokens,
    fake_gmail: FakeGmail,
    fake_gmail_starttls: FakeGmail,
) -> Iterator[FakeGoogleTokens]:
    """Google's token endpoint on 127.0.0.1; ``fake_gmail`` accepts what it issues."""
    _postbud_fake_google_tokens.reset()
    yield _postbud_fake_google_tokens
    _postbud_fake_google_tokens.reset()


@pytest.fixture(scope="session")
def _postbud_spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("postbud-spool")


@pytest.fixture(autouse=True)
def postbud_spool(_postbud_spool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point POSTBUD_SPOOL at a fresh file for every test."""
    path = _postbud_spool_dir / f"outbox-{next(_numbers)}.sqlite"
    monkeypatch.setenv("POSTBUD_SPOOL", str(path))
    return path
