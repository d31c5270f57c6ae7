"""SMTPTransport against FakeGmail over real sockets and real TLS."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from postbud import Mailer
from postbud.errors import (
    AuthenticationError,
    InvalidMessageError,
    MessageRefusedError,
    QuotaExceededError,
    RecipientsRefusedError,
    SenderRefusedError,
    SMTPTimeoutError,
    TransportError,
)
from postbud.testing import FakeGmail, replies

TO = "you@example.com"


@pytest.fixture
def mailer(fake_gmail: FakeGmail) -> Iterator[Mailer]:
    with fake_gmail.mailer() as m:
        yield m


def auth_commands(fake: FakeGmail) -> list[str]:
    return [c for c in fake.commands if c.startswith("AUTH")]


# -- both TLS modes -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_sends_over_both_tls_modes(
    mode: str, fake_gmail: FakeGmail, fake_gmail_starttls: FakeGmail
) -> None:
    fake = fake_gmail if mode == "ssl" else fake_gmail_starttls
    with fake.mailer() as m:
        result = m.send(TO, "Hello", "Body")
    assert result.accepted == (TO,) and dict(result.refused) == {}
    [received] = fake.messages
    assert received.mail_from == fake.username and received.recipients == (TO,)
    assert received["Message-ID"] == result.message_id
    assert received.authenticated_as == fake.username
    assert any(o.startswith("SIZE=") for o in received.mail_options)
    expected = ["EHLO", "AUTH PLAIN", "MAIL", "RCPT", "DATA", "QUIT"]
    if mode == "starttls":
        expected = ["EHLO", "STARTTLS", *expected]
    assert fake.commands == expected


def test_login_falls_back_to_auth_login(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.auth_line = "AUTH LOGIN"
    mailer.send(TO, "Hi", "x")
    assert auth_commands(fake_gmail) == ["AUTH LOGIN"]
    assert fake_gmail.logins == [fake_gmail.username]


def test_app_password_spaces_are_ignored(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer(app_password="  abcdefgh ijklmnop ") as m:
        m.send(TO, "Hi", "x")
    assert len(fake_gmail.messages) == 1


# -- TLS is verified and credentials never go out in clear ----------------------------


def test_untrusted_certificate_is_refused(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.untrusted = True
    with pytest.raises(TransportError) as info:
        mailer.send(TO, "Hi", "x")
    assert "is not trusted" in str(info.value) and "ca_file" in str(info.value)
    assert info.value.retryable is False
    assert auth_commands(fake_gmail) == [] and fake_gmail.messages == []


def test_system_trust_store_does_not_trust_the_fake(fake_gmail: FakeGmail) -> None:
    with (
        fake_gmail.mailer(ca_file=None) as m,
        pytest.raises(TransportError, match="is not trusted"),
    ):
        m.send(TO, "Hi", "x")


def test_no_starttls_offered_means_no_login(fake_gmail_starttls: FakeGmail) -> None:
    fake = fake_gmail_starttls
    fake.strip_starttls = True  # and AUTH offered in clear: a downgrade attack
    with fake.mailer() as m, pytest.raises(TransportError) as info:
        m.send(TO, "Hi", "x")
    assert "does not offer STARTTLS" in str(info.value)
    assert "unencrypted" in str(info.value)
    assert auth_commands(fake) == [] and "STARTTLS" not in fake.commands


def test_starttls_refused_means_no_login(fake_gmail_starttls: FakeGmail) -> None:
    fake = fake_gmail_starttls
    fake.refuse_starttls = True
    with fake.mailer() as m, pytest.raises(TransportError) as info:
        m.send(TO, "Hi", "x")
    assert "454" in str(info.value)
    assert auth_commands(fake) == []


def test_an_ssl_context_that_does_not_verify_is_rejected(fake_gmail: FakeGmail) -> None:
    import ssl

    from postbud import ConfigurationError, SMTPTransport

    lax = ssl.create_default_context()
    lax.check_hostname = False
    with pytest.raises(ConfigurationError, match="must verify certificates"):
        SMTPTransport(fake_gmail.settings(), ssl_context=lax)


def test_wrong_mode_for_the_port_fails_clearly(
    fake_gmail: FakeGmail, fake_gmail_starttls: FakeGmail
) -> None:
    # STARTTLS client against an implicit-TLS server: the TLS hello is not SMTP.
    with (
        fake_gmail.mailer(security="starttls", timeout=0.5) as m,
        pytest.raises(SMTPTimeoutError) as timeout,
    ):
        m.send(TO, "Hi", "x")
    assert "check security='ssl'" in str(timeout.value)
    with (
        fake_gmail_starttls.mailer(security="ssl", timeout=3) as m,
        pytest.raises(TransportError) as info,
    ):
        m.send(TO, "Hi", "x")
    assert "'ssl' is port 465" in str(info.value)
    assert info.value.retryable is False  # a set-up mistake: retrying cannot fix it


# -- app-password replies and their hints ---------------------------------------------


def test_wrong_app_password(fake_gmail: FakeGmail) -> None:
    with (
        fake_gmail.mailer(app_password="wrongwrongwrongw") as m,
        pytest.raises(AuthenticationError) as info,
    ):
        m.send(TO, "Hi", "x")
    err = info.value
    assert (err.code, err.retryable) == (535, False)
    assert err.message.startswith("5.7.8 Username and Password not accepted")
    assert "myaccount.google.com/apppasswords" in (err.hint or "")
    assert fake_gmail.failed_logins == [fake_gmail.username]


def test_account_password_instead_of_app_password(fake_gmail: FakeGmail) -> None:
    from postbud.testing._fake import ACCOUNT_PASSWORD

    with (
        fake_gmail.mailer(app_password=ACCOUNT_PASSWORD) as m,
        pytest.raises(AuthenticationError) as info,
    ):
        m.send(TO, "Hi", "x")
    assert info.value.code == 534
    assert str(info.value).startswith("Gmail refused the login for postbud.test@gmail.com: 534")
    assert "Gmail wants an app password" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("reply", "code", "retryable", "retry_after", "hint"),
    [
        (replies.WEB_LOGIN_REQUIRED, 534, False, None, "sign-in in a web browser"),
        (replies.TOO_MANY_LOGINS, 454, True, 300.0, "throttling logins"),
        (replies.TEMPORARY_AUTH_PROBLEM, 454, True, 300.0, "wait several minutes"),
        (replies.BAD_CREDENTIALS, 535, False, None, "create a new app password"),
    ],
)
def test_auth_replies_and_hints(
    fake_gmail: FakeGmail,
    mailer: Mailer,
    reply: str,
    code: int,
    retryable: bool,
    retry_after: float | None,
    hint: str,
) -> None:
    fake_gmail.fail_next("AUTH", reply)
    with pytest.raises(AuthenticationError) as info:
        mailer.send(TO, "Hi", "x")
    err = info.value
    assert (err.code, err.retryable, err.retry_after) == (code, retryable, retry_after)
    assert hint in (err.hint or "")
    assert fake_gmail.messages == []
    if not retryable:
        # The same credentials are not tried again (Gmail locks accounts that keep
        # failing): the next send says so without logging in...
        logins = len(fake_gmail.logins) + len(fake_gmail.failed_logins)
        with pytest.raises(AuthenticationError, match=r"did not log in: logins for .* paused"):
            mailer.send(TO, "Hi", "x")
        assert len(fake_gmail.logins) + len(fake_gmail.failed_logins) == logins
        # ...until the user says it is fixed (postbud outbox retry).
        mailer.outbox.retry_pending(clear_pauses=True)
    # The failed connection is not reused: the next send logs in afresh and works.
    assert mailer.send(TO, "Hi", "x").accepted == (TO,)


def test_connect_fails_early_on_bad_credentials(fake_gmail: FakeGmail) -> None:
    m = fake_gmail.mailer(app_password="wrongwrongwrongw")
    with pytest.raises(AuthenticationError), m.connect():
        pytest.fail("not reached")
    assert fake_gmail.commands.count("MAIL") == 0


# -- reuse, probe, reconnect ----------------------------------------------------------


def test_one_connection_is_reused(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    for i in range(5):
        mailer.send(TO, f"n{i}", "x")
    assert fake_gmail.connections == 1
    assert auth_commands(fake_gmail) == ["AUTH PLAIN"]
    assert len(fake_gmail.messages) == 5


def test_idle_connection_is_probed_with_noop(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    mailer._transport.probe_after = 0  # type: ignore[attr-defined]
    time.sleep(0.01)
    mailer.send(TO, "second", "x")
    assert fake_gmail.commands.count("NOOP") == 1 and fake_gmail.connections == 1


def test_probe_finds_it_gone_and_reconnects(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    mailer._transport.probe_after = 0  # type: ignore[attr-defined]
    fake_gmail.fail_next("NOOP", replies.IDLE_TIMEOUT, close=True)
    time.sleep(0.01)
    mailer.send(TO, "second", "x")
    assert fake_gmail.connections == 2
    assert [m["Subject"] for m in fake_gmail.messages] == ["first", "second"]


def test_dropped_connection_is_reopened_once(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    fake_gmail.close_connections()  # Gmail retires the connection while we are idle
    result = mailer.send(TO, "second", "x")
    assert fake_gmail.connections == 2
    assert [m["Message-ID"] for m in fake_gmail.messages][-1] == result.message_id
    assert len(fake_gmail.messages) == 2  # delivered once


@pytest.mark.parametrize("reply", [replies.CONNECTION_EXPIRED, replies.IDLE_TIMEOUT])
def test_expired_connection_at_mail_is_reopened(
    fake_gmail: FakeGmail, mailer: Mailer, reply: str
) -> None:
    mailer.send(TO, "first", "x")
    fake_gmail.fail_next("MAIL", reply, close=True)
    mailer.send(TO, "second", "x")
    assert fake_gmail.connections == 2 and len(fake_gmail.messages) == 2


def test_reconnect_happens_once_only(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER, close=True, times=2)
    with pytest.raises(TransportError) as info:
        mailer.send(TO, "second", "x")
    assert info.value.code == 421 and info.value.retryable
    assert fake_gmail.connections == 2  # one reconnect, then the error is reported


def test_fresh_connection_is_not_retried(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER, close=True)
    with pytest.raises(TransportError):
        mailer.send(TO, "first", "x")
    assert fake_gmail.connections == 1


def test_drop_mid_data_is_not_resent(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    fake_gmail.disconnect_next("DATA")
    with pytest.raises(TransportError) as info:
        mailer.send(TO, "second", "x" * 10000)
    assert info.value.retryable
    assert len(fake_gmail.messages) == 1  # nothing half-delivered, nothing doubled
    assert mailer.send(TO, "third", "x").accepted == (TO,)


def test_thread_safe_on_one_connection(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                mailer.send(TO, f"t{n}-{i}", "x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake_gmail.messages) == 40 and fake_gmail.connections == 1
    assert len({m["Message-ID"] for m in fake_gmail.messages}) == 40


# -- the deadline ---------------------------------------------------------------------


def test_server_that_never_greets(fake_gmail: FakeGmail) -> None:
    fake_gmail.delay(30, "CONNECT")
    start = time.monotonic()
    with fake_gmail.mailer(timeout=0.5) as m, pytest.raises(SMTPTimeoutError) as info:
        m.send(TO, "Hi", "x")
    assert time.monotonic() - start < 2.0
    assert isinstance(info.value, TimeoutError) and info.value.retryable
    assert "within the 0.5 s deadline" in str(info.value)


def test_tls_handshake_that_never_completes() -> None:
    from postbud import Mailer

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never speaks
        port = silent.getsockname()[1]
        m = Mailer(
            username="me@gmail.com",
            app_password="abcd efgh ijkl mnop",
            host="127.0.0.1",
            port=port,
            timeout=0.5,
            spool=None,
        )
        start = time.monotonic()
        with pytest.raises(SMTPTimeoutError):
            m.send(TO, "Hi", "x")
        assert time.monotonic() - start < 2.0


def test_deadline_is_for_the_whole_attempt(fake_gmail: FakeGmail) -> None:
    fake_gmail.delay(0.3)  # every reply is slow, none alone exceeds the timeout
    start = time.monotonic()
    with fake_gmail.mailer(timeout=1.0) as m, pytest.raises(SMTPTimeoutError):
        m.send(TO, "Hi", "x")  # greeting, EHLO, AUTH, MAIL, RCPT, DATA: 1.8 s of replies
    assert time.monotonic() - start < 1.6
    assert fake_gmail.messages == []


def test_connection_refused(fake_gmail: FakeGmail) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with fake_gmail.mailer(port=port) as m, pytest.raises(TransportError) as info:
            m.send(TO, "Hi", "x")
    assert "refused the connection" in str(info.value) and info.value.retryable


# -- transaction replies --------------------------------------------------------------


def test_some_recipients_refused(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.bad_recipients = {"nobody@example.com"}
    result = mailer.send([TO, "nobody@example.com"], "Hi", "x")
    assert result.accepted == (TO,)
    code, text = result.refused["nobody@example.com"]
    assert code == 553 and text.startswith("5.1.3 The recipient address <nobody@example.com>")
    assert fake_gmail.messages[0].recipients == (TO,)


def test_all_recipients_refused(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.bad_recipients = {"nobody@example.com"}
    with pytest.raises(RecipientsRefusedError) as info:
        mailer.send("nobody@example.com", "Hi", "x")
    assert set(info.value.refused) == {"nobody@example.com"}
    assert info.value.code == 553 and not info.value.retryable
    assert "not a valid RFC 5321 address" in (info.value.hint or "")
    assert mailer.send(TO, "after", "x").accepted == (TO,)  # the connection is still good
    assert fake_gmail.connections == 1 and "RSET" in fake_gmail.commands


@pytest.mark.parametrize("command", ["MAIL", "DATA"])
def test_daily_limit(fake_gmail: FakeGmail, mailer: Mailer, command: str) -> None:
    fake_gmail.fail_next(command, replies.DAILY_LIMIT_EXCEEDED)
    with pytest.raises(QuotaExceededError) as info:
        mailer.send(TO, "Hi", "x")
    assert (info.value.code, info.value.retryable, info.value.retry_after) == (550, True, 3600.0)
    assert "daily sending limit" in (info.value.hint or "")


def test_quota_after_n_messages(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.quota_after(2)
    mailer.send(TO, "1", "x")
    mailer.send(TO, "2", "x")
    with pytest.raises(QuotaExceededError):
        mailer.send(TO, "3", "x")


def test_sender_and_message_refusals(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.fail_next("MAIL", replies.BAD_SENDER)
    with pytest.raises(SenderRefusedError) as sender:
        mailer.send(TO, "Hi", "x")
    assert sender.value.code == 553
    fake_gmail.fail_next("DATA", replies.MESSAGE_TOO_BIG)
    with pytest.raises(MessageRefusedError) as data:
        mailer.send(TO, "Hi", "x")
    assert data.value.code == 552 and "25 MB" in (data.value.hint or "")
    fake_gmail.fail_next("DATA", replies.TEMPORARY_REJECTION)
    with pytest.raises(MessageRefusedError) as temp:
        mailer.send(TO, "Hi", "x")
    assert temp.value.retryable
    assert mailer.send(TO, "fine", "x").accepted == (TO,)


def test_more_than_100_recipients_go_in_several_envelopes(
    fake_gmail: FakeGmail, mailer: Mailer
) -> None:
    people = [f"user{i}@example.com" for i in range(250)]
    result = mailer.send(TO, "Newsletter", "x", bcc=people)
    assert len(result.accepted) == 251
    assert [len(m.recipients) for m in fake_gmail.messages] == [100, 100, 51]
    assert {m["Message-ID"] for m in fake_gmail.messages} == {result.message_id}


def test_server_with_a_lower_recipient_limit(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.max_recipients = 30  # answers 452 4.5.3 past 30
    people = [f"user{i}@example.com" for i in range(70)]
    result = mailer.send(people, "Hi", "x")
    assert len(result.accepted) == 70 and dict(result.refused) == {}
    assert [len(m.recipients) for m in fake_gmail.messages] == [30, 30, 10]


def test_smtputf8_when_offered(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send("jürgen@example.com", "Grüße", "x")
    [received] = fake_gmail.messages
    assert received.smtputf8 and received.recipients == ("jürgen@example.com",)
    assert received["To"] == "jürgen@example.com"


def test_smtputf8_not_offered(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.smtputf8 = False
    with pytest.raises(InvalidMessageError, match="needs the SMTPUTF8 extension"):
        mailer.send("jürgen@example.com", "Hi", "x")
    assert "MAIL" not in fake_gmail.commands


def test_raw_smtplib_client_sees_gmail(fake_gmail_starttls: FakeGmail) -> None:
    import smtplib

    fake = fake_gmail_starttls
    with smtplib.SMTP("127.0.0.1", fake.port, local_hostname="client") as smtp:
        code, lines = smtp.ehlo()
        assert code == 250
        assert lines.decode().splitlines() == [
            "smtp.gmail.com at your service, [127.0.0.1]",
            "SIZE 35882577",
            "8BITMIME",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "CHUNKING",
            "SMTPUTF8",
        ]
        code, text = smtp.docmd("AUTH", "PLAIN AHgAeQ==")
        assert code == 530 and text.startswith(b"5.7.0 Must issue a STARTTLS command first.")
        assert smtp.starttls(context=fake.ssl_context())[0] == 220
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].strip() == (
            "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"
        )
        assert "starttls" not in smtp.esmtp_features
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtp.login(fake.username, "wrong")
        assert info.value.smtp_code == 535
        assert info.value.smtp_error.startswith(b"5.7.8 Username and Password not accepted.")  # type: ignore[arg-type]


# -- PIPELINING (RFC 2920): MAIL, RCPT... and DATA in one write -----------------------

OTHER = "other@example.com"


def test_envelope_commands_are_pipelined(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send([TO, OTHER, "third@example.com"], "Hi", "x")
    # Each of these arrived with the next command already behind it; DATA was the
    # last of the write (the message waits for its 354).
    assert fake_gmail.pipelined == ["MAIL", "RCPT", "RCPT", "RCPT"]
    assert fake_gmail.messages[0].recipients == (TO, OTHER, "third@example.com")


def test_without_pipelining_one_command_at_a_time(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.pipelining = False  # before the (lazy) connection's EHLO
    assert mailer.send([TO, OTHER], "Hi", "x").accepted == (TO, OTHER)
    assert fake_gmail.pipelined == []
    assert fake_gmail.commands[-4:] == ["MAIL", "RCPT", "RCPT", "DATA"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_refusals_keep_the_session_in_step(
    fake_gmail: FakeGmail, mailer: Mailer, pipelining: bool
) -> None:
    """Every way a transaction can be refused leaves the connection answering the
    next command with its own reply: pipelined replies that follow a refusal are read."""
    fake_gmail.pipelining = pipelining
    fake_gmail.fail_next("MAIL", replies.BAD_SENDER)  # the RCPTs and DATA behind: 503
    with pytest.raises(SenderRefusedError):
        mailer.send([TO, OTHER], "1", "x")
    fake_gmail.bad_recipients = {OTHER}
    with pytest.raises(RecipientsRefusedError):  # no recipient: DATA refused too
        mailer.send(OTHER, "2", "x")
    assert mailer.send([OTHER, TO], "3", "x").accepted == (TO,)  # one of two refused
    fake_gmail.fail_next("DATA", replies.TEMPORARY_REJECTION)
    with pytest.raises(MessageRefusedError):
        mailer.send(TO, "4", "x")
    assert mailer.send(TO, "5", "x").accepted == (TO,)
    assert [m.message["Subject"] for m in fake_gmail.messages] == ["3", "5"]
    assert fake_gmail.connections == 1
    assert fake_gmail.commands.count("RSET") == 3


def test_lines_starting_with_a_dot_arrive_as_written(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    text = "first\n.hidden\n..two dots\n.\nlast\n"
    mailer.send(TO, "Dots", text)
    mailer.send(TO, "Dots again", ".")  # a message that is one dot
    first, second = (m.message.get_content().replace("\r\n", "\n") for m in fake_gmail.messages)
    assert first == text
    assert second.strip() == "."


def test_refusal_keeps_the_connection(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED)
    with pytest.raises(QuotaExceededError) as info:
        mailer.send(TO, "1", "x")
    assert str(info.value).startswith(
        "Gmail's sending limit is reached for postbud.test@gmail.com: 550 5.4.5 Daily user"
    )
    mailer.send(TO, "2", "x")
    assert fake_gmail.connections == 1
    assert fake_gmail.commands.count("RSET") == 1
    assert auth_commands(fake_gmail) == ["AUTH PLAIN"]


def test_reply_instead_of_the_greeting(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    fake_gmail.fail_next("CONNECT", replies.TRY_AGAIN_LATER, close=True)
    with pytest.raises(TransportError) as info:
        mailer.send(TO, "Hi", "x")
    assert (info.value.code, info.value.retryable) == (421, True)
    assert str(info.value).startswith("The server is closing the connection: 421 4.7.0 Try")
    assert mailer.send(TO, "Hi", "x").accepted == (TO,)


def test_ehlo_and_starttls_faults(fake_gmail: FakeGmail, fake_gmail_starttls: FakeGmail) -> None:
    from postbud.errors import RefusedError

    fake_gmail.fail_next("EHLO", "554 5.7.0 Too many unauthenticated commands. {id} - gsmtp")
    with fake_gmail.mailer() as m, pytest.raises(RefusedError) as info:
        m.send(TO, "Hi", "x")
    assert info.value.code == 554 and "EHLO" in str(info.value)
    fake_gmail_starttls.disconnect_next("STARTTLS")
    with fake_gmail_starttls.mailer() as m, pytest.raises(TransportError, match="closed"):
        m.send(TO, "Hi", "x")
    assert auth_commands(fake_gmail_starttls) == []


def test_a_failure_after_a_452_split_reports_instead_of_raising(
    fake_gmail: FakeGmail, mailer: Mailer
) -> None:
    fake_gmail.max_recipients = 2
    fake_gmail.quota_after(1)  # the first transaction gets through, the second hits 550
    people = ["a@example.com", "b@example.com", "c@example.com"]
    result = mailer.send(people, "Hi", "x")
    assert result.accepted == ("a@example.com", "b@example.com")
    code, text = result.refused["c@example.com"]
    assert code == 550
    assert "5.4.5" in text
    assert len(fake_gmail.messages) == 1  # nobody got it twice


def test_421_at_rcpt_is_reported_not_retried(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    mailer.send(TO, "first", "x")
    fake_gmail.fail_next("RCPT", replies.TRY_AGAIN_LATER, close=True)
    with pytest.raises(TransportError) as info:
        mailer.send(TO, "second", "x")
    assert (info.value.code, info.value.retryable) == (421, True)
    assert fake_gmail.connections == 1  # past MAIL nothing is retried within send()


def test_eight_bit_message_goes_with_body_8bitmime(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"] = TO
    msg["Subject"] = "8bit"
    msg.set_content("héllo wörld")  # the default policy writes this as 8bit
    mailer.send_message(msg)
    [received] = fake_gmail.messages
    assert "BODY=8BITMIME" in received.mail_options
    assert received.text == "héllo wörld\n"


def test_slow_reading_server_hits_the_deadline(fake_gmail: FakeGmail) -> None:
    import os

    def pump(src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while chunk := src.recv(4096 if slow else 65536):
                dst.sendall(chunk)
                if slow:
                    time.sleep(0.02)
        except OSError:
            pass

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", fake_gmail.port))
            threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()
            pump(client, upstream, True)
            # shutdown() wakes the other pump's recv and sends FIN; close() alone would not.
            for end in (client, upstream):
                with contextlib.suppress(OSError):  # the peer may be gone already
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

        proxy = threading.Thread(target=serve, daemon=True)
        proxy.start()
        with fake_gmail.mailer(port=listener.getsockname()[1], timeout=1.0) as m:
            start = time.monotonic()
            with pytest.raises(SMTPTimeoutError):
                m.send(TO, "big", "x", attachments=[("a.bin", os.urandom(3_000_000))])
            assert time.monotonic() - start < 1.5
        proxy.join(5)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_connection(fake_gmail: FakeGmail, mailer: Mailer) -> None:
    import os

    mailer.send(TO, "parent before", "x")
    pid = os.fork()
    if pid == 0:  # the child: must not touch the parent's TLS session
        status = 1
        try:
            mailer.send(TO, "child", "x")
            mailer.close()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    mailer.send(TO, "parent after", "x")  # the parent's connection is undisturbed
    subjects = [m["Subject"] for m in fake_gmail.messages]
    assert subjects == ["parent before", "child", "parent after"]
    assert fake_gmail.connections == 2
    assert auth_commands(fake_gmail) == ["AUTH PLAIN", "AUTH PLAIN"]
