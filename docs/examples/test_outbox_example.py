"""Code that submits mail, tested against FakeGmail: submit(), then flush()."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import postbud
from postbud.testing import FakeGmail, replies


def request_password_reset(mailer: postbud.Mailer, email: str, token: str) -> str:
    """The application code under test: queue the mail, never wait for Gmail."""
    return mailer.submit(email, "Reset your password", f"https://example.com/reset/{token}")


def test_reset_mail_is_delivered(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    with fake_gmail.mailer() as mailer:
        message_id = request_password_reset(mailer, "ada@example.com", "t0k3n")
        assert mailer.flush(10)  # the worker has settled everything submitted so far
        stats = mailer.stats()

    [received] = fake_gmail.messages
    assert received["Message-ID"] == message_id
    assert "https://example.com/reset/t0k3n" in (received.text or "")
    assert (stats["submitted"], stats["sent"], stats["queued"]) == (1, 1, 0)
    assert postbud_spool.exists()  # this test's own spool, not yours


def test_a_bad_address_raises_in_the_callers_thread(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as mailer:
        with pytest.raises(postbud.InvalidMessageError):
            request_password_reset(mailer, "ada@", "t0k3n")
        assert mailer.stats()["submitted"] == 0


def test_throttled_login_waits_for_a_retry(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("AUTH", replies.TOO_MANY_LOGINS)  # 454 4.7.0: retry in 300 s
    with fake_gmail.mailer() as mailer:
        request_password_reset(mailer, "ada@example.com", "t0k3n")
        assert mailer.flush(2)  # settled: the next try is more than 2 s away
        stats = mailer.stats()

    assert fake_gmail.messages == []
    assert (stats["retried"], stats["queued"]) == (1, 1)  # kept in the spool


def test_a_refused_address_is_dead_lettered(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gmail.bad_recipients = {"typo@example.con"}
    with fake_gmail.mailer() as mailer:
        request_password_reset(mailer, "typo@example.con", "t0k3n")
        assert mailer.flush(10)  # a dead letter is settled too
        assert mailer.stats()["dead"] == 1

    assert fake_gmail.messages == []
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "postbud gave up on" in warning.getMessage()
    assert "5.1.3" in warning.getMessage()
