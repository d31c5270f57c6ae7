"""FakeGmail itself: Gmail's wire texts, reset, fault-injection rules, MemoryTransport."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from postbud.testing import FakeGmail, MemoryTransport, replies


def read_reply(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        data += sock.recv(4096)
    return data


def test_greeting_and_ehlo_over_implicit_tls(fake_gmail: FakeGmail) -> None:
    raw = socket.create_connection(("127.0.0.1", fake_gmail.port), timeout=5)
    with fake_gmail.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        greeting = read_reply(tls).decode()
        assert greeting.startswith("220 smtp.gmail.com ESMTP ")
        assert greeting.endswith(" - gsmtp\r\n")
        tls.sendall(b"EHLO client\r\n")
        lines = b""
        while not lines.endswith(b"250 SMTPUTF8\r\n"):
            lines += tls.recv(4096)
        assert lines.decode().split("\r\n")[:-1] == [
            "250-smtp.gmail.com at your service, [127.0.0.1]",
            "250-SIZE 35882577",
            "250-8BITMIME",
            "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
            "250-ENHANCEDSTATUSCODES",
            "250-PIPELINING",
            "250-CHUNKING",
            "250 SMTPUTF8",
        ]
        tls.sendall(b"MAIL FROM:<x@example.com>\r\n")
        assert read_reply(tls).decode().startswith("530-5.7.0 Authentication Required.")
        tls.sendall(b"QUIT\r\n")
        assert read_reply(tls).decode().startswith("221 2.0.0 closing connection ")


def test_login_with_auth_login_uses_gmails_challenges(fake_gmail: FakeGmail) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", fake_gmail.port, context=fake_gmail.ssl_context()) as s:
        s.ehlo()
        code, challenge = s.docmd("AUTH", "LOGIN")
        assert (code, challenge) == (334, b"VXNlcm5hbWU6")  # "Username:"
        code, challenge = s.docmd("cG9zdGJ1ZC50ZXN0QGdtYWlsLmNvbQ==")
        assert (code, challenge) == (334, b"UGFzc3dvcmQ6")  # "Password:"
        code, text = s.docmd("YWJjZGVmZ2hpamtsbW5vcA==")  # abcdefghijklmnop
        assert (code, text) == (235, b"2.7.0 Accepted")


def test_reset_forgets_everything(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as m:
        m.send("a@example.com", "x", "x")
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER)
    fake_gmail.untrusted = True
    fake_gmail.delay(1)
    fake_gmail.reset()
    assert (fake_gmail.messages, fake_gmail.commands, fake_gmail.connections) == ([], [], 0)
    with fake_gmail.mailer() as m:
        assert m.send("a@example.com", "x", "x").accepted == ("a@example.com",)


def test_faults_are_consumed_in_order(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("RCPT", replies.BAD_RECIPIENT, times=2)
    with fake_gmail.mailer() as m:
        result = m.send(["a@example.com", "b@example.com", "c@example.com"], "x", "x")
    assert result.accepted == ("c@example.com",)
    assert result.refused["a@example.com"][1].startswith(
        "5.1.3 The recipient address <a@example.com> is not a valid RFC 5321 address."
    )


def test_fault_at_unknown_command_is_refused(fake_gmail: FakeGmail) -> None:
    with pytest.raises(ValueError, match="cannot inject a fault at 'HELO'"):
        fake_gmail.fail_next("HELO", "500 no")
    with pytest.raises(ValueError, match="mode must be"):
        FakeGmail("tls")  # type: ignore[arg-type]


def test_disconnect_before_a_reply(fake_gmail: FakeGmail) -> None:
    from postbud.errors import TransportError

    fake_gmail.disconnect_next("RCPT")
    with fake_gmail.mailer() as m, pytest.raises(TransportError, match="closed the connection"):
        m.send("a@example.com", "x", "x")


def test_standalone_context_manager_and_ca_file_cleanup() -> None:
    with FakeGmail(username="ops@example.com", app_password="pass word") as fake:
        ca_file = fake.ca_file
        assert repr(fake).startswith("<FakeGmail ssl 127.0.0.1:")
        with fake.mailer() as m:
            m.send("a@example.com", "x", "x")
        assert fake.logins == ["ops@example.com"] and fake.connections == 1
    import os

    assert not os.path.exists(ca_file)


def test_received_message_helpers(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer() as m:
        m.send("a@example.com", "Both", "plain text", html="<p>html</p>")
    [record] = fake_gmail.messages
    assert record["Subject"] == "Both" and record["X-Missing"] is None
    assert record.text == "plain text\n" and record.html == "<p>html</p>\n"


def test_memory_transport_records_and_refuses() -> None:
    from postbud import Mailer

    transport = MemoryTransport(refuse={"no@example.com": (550, "5.1.1 unknown")})
    mailer = Mailer(username="me@gmail.com", app_password="x", transport=transport)
    result = mailer.send(["a@example.com", "no@example.com"], "Hi", html="<p>x</p>")
    assert result.refused == {"no@example.com": (550, "5.1.1 unknown")}
    [record] = transport.messages
    assert record.recipients == ("a@example.com",) and record.text == "x\n"
    assert record.html == "<p>x</p>\n"


def test_intercept_routes_gmail_settings_to_the_fake() -> None:
    import postbud
    from postbud._smtp import current_route

    with FakeGmail(username="me@gmail.com", app_password="abcd efgh ijkl mnop") as fake:
        with fake.intercept():
            mailer = postbud.Mailer(username="me@gmail.com", app_password="abcd efgh ijkl mnop")
            assert (mailer.settings.host, mailer.settings.port) == ("smtp.gmail.com", 465)
            mailer.send("you@example.com", "Intercepted", "x")
            mailer.close()
        assert current_route() is None
        assert [m["Subject"] for m in fake.messages] == ["Intercepted"]


def _wait_until(condition: Callable[[], object], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_client_that_hangs_up_before_the_greeting_leaves_no_open_transport() -> None:
    with FakeGmail() as fake:
        fake.delay(5, "CONNECT")  # the greeting is pending when the client leaves
        raw = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
        with fake.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1"):
            _wait_until(lambda: any(s.transport for s in list(fake._sessions)))
            [session] = [s for s in list(fake._sessions) if s.transport]
            transport = session.transport
        _wait_until(lambda: session.transport is None)  # the connection is lost
        # Closed: on Python 3.10 it was not, and warned when collected (ResourceWarning).
        assert transport is not None and transport.is_closing()


def test_stop_drops_idle_clients_at_once() -> None:
    import gc

    fake = FakeGmail()
    fake.start()
    raw = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    with fake.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(1024).startswith(b"220 ")  # then idle, like a Mailer nobody closed
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 3  # not the 30 s TLS shutdown timeout (3.12+)
        assert all(s.transport is None for s in list(fake._sessions))
    gc.collect()  # an unclosed server transport would warn (ResourceWarning) here
