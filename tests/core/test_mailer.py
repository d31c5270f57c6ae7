"""Mailer façade: send, send_message, connect, context manager, MemoryTransport."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from pathlib import Path

import pytest

import postbud
from postbud import Mailer, SendResult
from postbud.errors import AuthenticationError, RecipientsRefusedError, TransportError
from postbud.testing import FakeGmail, MemoryTransport

TO = "you@example.com"
PW = "abcd efgh ijkl mnop"


def memory_mailer(**kwargs: object) -> tuple[Mailer, MemoryTransport]:
    transport = MemoryTransport(**kwargs)  # type: ignore[arg-type]
    return Mailer(username="me@gmail.com", app_password=PW, transport=transport), transport


def test_send_returns_a_result() -> None:
    mailer, transport = memory_mailer()
    result = mailer.send([TO, "b@example.com"], "Hi", "text")
    assert isinstance(result, SendResult)
    assert result.accepted == (TO, "b@example.com") and dict(result.refused) == {}
    assert result.message_id.startswith("<") and result.message_id.endswith("@gmail.com>")
    [record] = transport.messages
    assert record["Message-ID"] == result.message_id and record.text == "text\n"
    assert mailer.stats()["sent"] == 1
    assert mailer.stats()["quota_used"] == 2


def test_send_message_strips_bcc_and_keeps_the_callers_message(fake_gmail: FakeGmail) -> None:
    msg = EmailMessage()
    msg["To"] = TO
    msg["Bcc"] = "secret@example.com"
    msg["Subject"] = "Built elsewhere"
    msg.set_content("body")
    with fake_gmail.mailer() as mailer:
        result = mailer.send_message(msg)
    [record] = fake_gmail.messages
    assert record.recipients == (TO, "secret@example.com")
    assert record["Bcc"] is None and b"secret@example.com" not in record.data
    assert record["From"] == fake_gmail.username and record["Message-ID"] == result.message_id
    assert msg["Bcc"] == "secret@example.com" and msg["Message-ID"] is None


def test_foreign_sender_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    mailer, transport = memory_mailer()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        mailer.send(TO, "1", "x", sender="Ops <ops@example.com>")
        mailer.send(TO, "2", "x", sender="ops@example.com")
        mailer.send(TO, "3", "x", sender="Me <me@gmail.com>")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "From ops@example.com is not the account me@gmail.com" in warnings[0]
    assert "Send mail as" in warnings[0]
    assert transport.messages[0]["From"] == "Ops <ops@example.com>"
    assert transport.messages[0].mail_from == "me@gmail.com"


def test_settings_sender_is_the_default_from() -> None:
    transport = MemoryTransport()
    mailer = Mailer(
        username="me@gmail.com", app_password=PW, sender="Robot <me@gmail.com>", transport=transport
    )
    mailer.send(TO, "Hi", "x")
    assert transport.messages[0]["From"] == "Robot <me@gmail.com>"


def test_settings_object_plus_overrides(fake_gmail: FakeGmail) -> None:
    mailer = Mailer(fake_gmail.settings(), timeout=3)
    assert mailer.settings.timeout == 3.0 and mailer.settings.port == fake_gmail.port
    assert repr(mailer) == f"<postbud.Mailer {fake_gmail.username} via 127.0.0.1:{fake_gmail.port}>"


def test_all_refused_raises_with_details() -> None:
    mailer, _ = memory_mailer(refuse={TO: (550, "5.1.1 no such user")})
    with pytest.raises(RecipientsRefusedError) as info:
        mailer.send(TO, "Hi", "x")
    assert info.value.refused == {TO: (550, "5.1.1 no such user")}
    assert mailer.stats()["sent"] == 0


def test_partial_failure_across_envelopes_is_reported_not_raised() -> None:
    class FailSecond(MemoryTransport):
        calls = 0

        def send(self, envelope: postbud.Envelope) -> dict[str, tuple[int, str]]:
            FailSecond.calls += 1
            if FailSecond.calls == 2:
                raise TransportError("connection lost")
            return super().send(envelope)

    flaky = FailSecond()
    mailer = Mailer(username="me@gmail.com", app_password=PW, transport=flaky)
    people = [f"u{i}@example.com" for i in range(150)]
    result = mailer.send(people, "Hi", "x")
    assert len(result.accepted) == 100
    assert set(result.refused) == set(people[100:])
    assert result.refused[people[100]] == (0, "connection lost")


def test_first_envelope_failure_raises() -> None:
    mailer, transport = memory_mailer()
    transport.fail_next(TransportError("down"))
    with pytest.raises(TransportError, match="down"):
        mailer.send(TO, "Hi", "x")


def test_connect_and_context_manager_use_the_transport() -> None:
    mailer, transport = memory_mailer()
    with mailer, mailer.connect() as same:
        assert same is mailer
        mailer.send(TO, "Hi", "x")
    assert (transport.opened, transport.closed) == (1, 2)


def test_connect_is_one_session(fake_gmail: FakeGmail) -> None:
    mailer = fake_gmail.mailer()
    with mailer.connect():
        assert fake_gmail.logins == [fake_gmail.username]  # logged in before any send
        for i in range(3):
            mailer.send(TO, f"n{i}", "x")
    assert fake_gmail.commands[-1] == "QUIT" and fake_gmail.connections == 1
    mailer.send(TO, "after", "x")  # usable after the block: it reconnects
    assert fake_gmail.connections == 2
    mailer.close()


def test_open_logs_in_now_and_keeps_the_connection(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as mailer:
        mailer.open()
        assert fake_gmail.logins == [fake_gmail.username]  # before any send
        mailer.open()  # already open: nothing more
        mailer.send(TO, "one", "x")
        mailer.send(TO, "two", "x")
        assert fake_gmail.connections == 1 and fake_gmail.logins == [fake_gmail.username]
        assert "QUIT" not in fake_gmail.commands  # open() ends nothing


def test_open_with_a_wrong_password_logs_in_once(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    wrong = fake_gmail.settings(app_password="wrongwrongwrongw", spool=str(tmp_path / "s.db"))
    with Mailer(wrong) as mailer:
        with pytest.raises(AuthenticationError) as first:
            mailer.open()
        assert first.value.code == 535
        with pytest.raises(AuthenticationError) as again:  # the same credentials: paused
            mailer.open()
        assert str(again.value).startswith("postbud did not log in: ")
    assert len(fake_gmail.failed_logins) == 1  # Gmail saw one refused login, not two


def test_a_refused_envelope_does_not_stop_the_next() -> None:
    people = [f"u{i}@example.com" for i in range(250)]
    refuse = dict.fromkeys(people[100:200], (550, "5.1.1 no such user"))
    mailer, transport = memory_mailer(refuse=refuse)
    result = mailer.send(people, "Hi", "x")
    assert len(result.accepted) == 150 and set(result.refused) == set(people[100:200])
    assert [len(m.recipients) for m in transport.messages] == [100, 50]


def test_every_envelope_refused_raises_with_all_refusals() -> None:
    people = [f"u{i}@example.com" for i in range(150)]
    mailer, _ = memory_mailer(refuse=dict.fromkeys(people, (450, "4.2.1 slow down")))
    with pytest.raises(RecipientsRefusedError) as info:
        mailer.send(people, "Hi", "x")
    assert len(info.value.refused) == 150 and info.value.retryable
