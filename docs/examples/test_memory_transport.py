"""MemoryTransport: capture mail in a list, no sockets and no extra packages."""

from __future__ import annotations

import pytest

import postbud
from postbud.errors import RecipientsRefusedError
from postbud.testing import MemoryTransport


def send_reset_link(mailer: postbud.Mailer, email: str, token: str) -> None:
    """The application code under test."""
    mailer.send(email, "Reset your password", f"https://example.com/reset/{token}")


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> MemoryTransport:
    monkeypatch.setenv("POSTBUD_USERNAME", "me@gmail.com")
    monkeypatch.setenv("POSTBUD_APP_PASSWORD", "abcd efgh ijkl mnop")
    return MemoryTransport(refuse={"gone@example.com": (550, "5.1.1 No such user")})


def test_reset_mail_holds_the_link(transport: MemoryTransport) -> None:
    with postbud.Mailer(postbud.Settings.from_env(), transport=transport) as mailer:
        send_reset_link(mailer, "ada@example.com", "t0k3n")

    [record] = transport.messages
    assert record.mail_from == "me@gmail.com"
    assert record.recipients == ("ada@example.com",)
    assert "https://example.com/reset/t0k3n" in (record.text or "")


def test_a_refused_address_raises(transport: MemoryTransport) -> None:
    with (
        postbud.Mailer(postbud.Settings.from_env(), transport=transport) as mailer,
        pytest.raises(RecipientsRefusedError) as info,
    ):
        send_reset_link(mailer, "gone@example.com", "t0k3n")

    assert info.value.refused == {"gone@example.com": (550, "5.1.1 No such user")}
    assert transport.messages == []
