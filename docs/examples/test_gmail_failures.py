"""Gmail's failures, injected into FakeGmail: what the application code sees."""

from __future__ import annotations

import pytest

from postbud.errors import AuthenticationError, QuotaExceededError, SMTPTimeoutError
from postbud.testing import FakeGmail, replies

WRONG = "wrongwrongwrongw"


def test_daily_limit_is_retryable(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED)
    with fake_gmail.mailer() as mailer, pytest.raises(QuotaExceededError) as info:
        mailer.send("you@example.com", "Nightly report", "All jobs finished.")

    assert (info.value.code, info.value.retryable, info.value.retry_after) == (550, True, 3600.0)
    assert fake_gmail.messages == []


def test_wrong_app_password_names_the_fix(fake_gmail: FakeGmail) -> None:
    with (
        fake_gmail.mailer(app_password=WRONG) as mailer,
        pytest.raises(AuthenticationError) as info,
    ):
        mailer.send("you@example.com", "Hi", "Hello")

    assert (info.value.code, info.value.retryable) == (535, False)
    assert "https://myaccount.google.com/apppasswords" in (info.value.hint or "")
    assert fake_gmail.failed_logins == [fake_gmail.username]


def test_refused_recipients_are_reported_not_raised(fake_gmail: FakeGmail) -> None:
    fake_gmail.bad_recipients = {"typo@example.con"}
    with fake_gmail.mailer() as mailer:
        result = mailer.send(["ada@example.com", "typo@example.con"], "Hi", "Hello")

    assert result.accepted == ("ada@example.com",)
    code, reply = result.refused["typo@example.con"]
    assert code == 553
    assert reply.startswith("5.1.3 The recipient address <typo@example.con>")
    assert fake_gmail.messages[0].recipients == ("ada@example.com",)


def test_a_dropped_connection_is_reopened_once(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as mailer:
        mailer.send("you@example.com", "First", "1")
        fake_gmail.close_connections()  # Gmail retires the idle connection
        mailer.send("you@example.com", "Second", "2")

    assert fake_gmail.connections == 2
    assert [m["Subject"] for m in fake_gmail.messages] == ["First", "Second"]


def test_a_silent_server_hits_the_deadline(fake_gmail: FakeGmail) -> None:
    fake_gmail.delay(5, "CONNECT")  # no greeting for 5 seconds
    with fake_gmail.mailer(timeout=0.5) as mailer, pytest.raises(SMTPTimeoutError) as info:
        mailer.send("you@example.com", "Hi", "Hello")

    assert info.value.retryable
    assert "within the 0.5 s deadline" in str(info.value)
