"""The one internal API adapters use: Mailer.outbox, SMTPTransport.probe(), diagnose(),
send_message(recipients=...), AlertHandler's capture() and render_mail() hooks."""

from __future__ import annotations

import logging
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import postbud
from postbud import AlertHandler, Mailer
from postbud._outbox import RetryPolicy
from postbud.alerts import Mail
from postbud.errors import AuthenticationError, ConfigurationError, TransportError
from postbud.testing import FakeGmail, replies

TO = "you@example.com"


def test_send_or_keep_keeps_what_failed_for_now(fake_gmail: FakeGmail) -> None:
    fake_gmail.fail_next("MAIL", replies.TRY_AGAIN_LATER)
    with fake_gmail.mailer() as mailer:
        outbox = mailer.outbox
        result, kept = outbox.send_or_keep(mailer.build(TO, "later", "x"), "alert")
        assert result is None and kept is not None and "421" in kept
        assert "kept in the spool" in outbox.kept_line("the report", kept)
        [row] = outbox.rows()
        assert (row.state, row.subject, row.priority) == ("queued", "later", "alert")
        assert outbox.thread is None  # kept for the next process: no worker started
        assert outbox.retry_pending() == 1  # due now, and the worker sends it
        assert mailer.flush(10)
    assert [m["Subject"] for m in fake_gmail.messages] == ["later"]


def test_status_rows_revive_and_purge(fake_gmail: FakeGmail) -> None:
    fake_gmail.bad_recipients = {"gone@example.com"}
    with fake_gmail.mailer() as mailer:
        outbox = mailer.outbox
        mailer.submit("gone@example.com", "refused", "x")
        assert mailer.flush(10)
        status = outbox.status()
        assert (status.queued, status.dead, status.account) == (0, 1, fake_gmail.username)
        assert status.spool == mailer.settings.spool and status.held_until is None
        [dead] = outbox.rows("dead")
        assert dead.last_code == 553 and dead.recipients == ("gone@example.com",)
        fake_gmail.bad_recipients = set()
        assert outbox.revive([dead.id]) == 1
        assert mailer.flush(10)
        assert outbox.rows() == []
        mailer.submit("gone@example.com", "refused again", "x")
        fake_gmail.bad_recipients = {"gone@example.com"}
        assert mailer.flush(10)
        assert outbox.purge() == 1 and outbox.rows() == []


def test_an_outbox_opened_to_read_sends_nothing(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    spool = str(tmp_path / "outbox.sqlite")
    with fake_gmail.mailer(spool=spool, port=1, exit_timeout=0) as mailer:
        mailer.outbox.keep(mailer.build(TO, "waiting", "x"), 1)
    reader = postbud._outbox.Outbox.open(fake_gmail.settings(spool=spool))
    try:
        assert reader.status().queued == 1 and reader.thread is None
        with pytest.raises(ConfigurationError, match="cannot send"):
            reader.send_now(fake_gmail.mailer(spool=None).build(TO, "no", "x"))
    finally:
        reader.close(0)
    assert fake_gmail.messages == []


def test_probe_reports_tls_ehlo_and_the_login(fake_gmail_starttls: FakeGmail) -> None:
    transport = postbud.SMTPTransport(fake_gmail_starttls.settings())
    probe = transport.probe()
    assert isinstance(probe, postbud.Probe)
    assert probe.tls_version.startswith("TLSv1") and probe.peer.startswith("localhost")
    assert probe.greeting.startswith("smtp.gmail.com at your service")
    assert "XOAUTH2" in probe.auth and probe.logged_in
    assert fake_gmail_starttls.logins == [fake_gmail_starttls.username]
    assert fake_gmail_starttls.messages == []  # nothing sent
    assert transport.probe(login=False).logged_in is False
    assert len(fake_gmail_starttls.logins) == 1


def test_probe_raises_what_a_send_would(fake_gmail: FakeGmail) -> None:
    bad = postbud.SMTPTransport(fake_gmail.settings(app_password="wrongwrongwrongw"))
    with pytest.raises(AuthenticationError) as refused:
        bad.probe()
    assert refused.value.code == 535
    wrong_mode = postbud.SMTPTransport(fake_gmail.settings(security="starttls", timeout=1))
    with pytest.raises(TransportError):
        wrong_mode.probe()


def test_a_context_loosened_after_it_was_given_is_refused_at_connect(
    fake_gmail: FakeGmail,
) -> None:
    context = fake_gmail.ssl_context()
    transport = postbud.SMTPTransport(fake_gmail.settings(), ssl_context=context)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError, match="must verify certificates"):
        transport.probe()
    assert fake_gmail.commands == []  # refused before connecting


def test_diagnose_returns_the_steps_and_stops_at_the_first_failure(
    fake_gmail: FakeGmail,
) -> None:
    seen: list[str] = []
    report = postbud.diagnose(fake_gmail.settings(), on_step=lambda step: seen.append(step.name))
    assert report.ok and report.exit_code == 0
    assert [s.name for s in report.steps] == seen
    assert seen == ["settings", "dns", "tcp", "tls", "ehlo", "login", "quota"]
    bad = postbud.diagnose(fake_gmail.settings(app_password="wrongwrongwrongw"))
    assert (bad.exit_code, bad.steps[-1].name, bad.steps[-1].ok) == (1, "login", False)
    assert bad.steps[-1].fix and "app password" in bad.steps[-1].fix
    assert "wrongwrong" not in repr(bad)

    def broken() -> postbud.Settings:
        return postbud.Settings(username="me@gmail.com")

    missing = postbud.diagnose(broken)
    assert (missing.exit_code, [s.name for s in missing.steps]) == (2, ["settings"])


def test_send_message_with_explicit_envelope_recipients(fake_gmail: FakeGmail) -> None:
    message = EmailMessage()
    message["To"] = "shown@example.com"
    message["Subject"] = "Bcc from the envelope"
    message.set_content("x")
    with fake_gmail.mailer() as mailer:
        result = mailer.send_message(message, recipients=["shown@example.com", "hidden@x.org"])
        assert result.accepted == ("shown@example.com", "hidden@x.org")
        mailer.submit_message(message, recipients="later@example.com")
        assert mailer.flush(10)
    first, second = fake_gmail.messages
    assert first.recipients == ("shown@example.com", "hidden@x.org")
    assert "hidden@x.org" not in first.data.decode()  # the envelope only
    assert second.recipients == ("later@example.com",)


class Hooked(AlertHandler):
    """An adapter-style handler: captures context on the caller's thread, custom subject."""

    def capture(self, record: logging.LogRecord) -> Any:
        return {"thread": record.threadName, "path": getattr(record, "path", None)}

    def render_mail(self, mail: Mail) -> tuple[str, str, str | None]:
        subject, text, html = super().render_mail(mail)
        captured = mail.detail.get("captured") if mail.kind == "first" else None
        if captured:
            return f"ERROR: {captured['path']}", f"{text}\ncaptured: {captured}\n", html
        return subject, text, html


def test_capture_and_render_mail_hooks(fake_gmail: FakeGmail) -> None:
    handler = Hooked(mailer=fake_gmail.mailer(), to="oncall@example.com", clock=lambda: now[0])
    now = [time.time()]
    logger = logging.getLogger("app.hooks")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(3):
            logger.error("view failed", extra={"path": f"/orders/{n}"})
        handler.tick()
        now[0] += 601  # past the cooldown: the follow-up
        handler.tick()
        assert handler.mailer.flush(10)
    finally:
        logger.removeHandler(handler)
        handler.close()
        handler.mailer.close()
    first, follow_up = fake_gmail.messages
    assert first["Subject"] == "ERROR: /orders/0"  # captured at the first occurrence only
    assert "captured: {'thread': 'MainThread', 'path': '/orders/0'}" in (first.text or "")
    # Follow-ups keep the default rendering (no capture: only first occurrences).
    assert (follow_up["X-Postbud-Alert"], follow_up["X-Postbud-Count"]) == ("follow-up", "2")
    assert not (follow_up["Subject"] or "").startswith("ERROR: /orders")


def test_a_failing_capture_hook_never_loses_the_alert(fake_gmail: FakeGmail) -> None:
    class Broken(AlertHandler):
        def capture(self, record: logging.LogRecord) -> Any:
            raise RuntimeError("no request here")

    handler = Broken(mailer=fake_gmail.mailer(), to="oncall@example.com")
    try:
        handler.handle(logging.makeLogRecord({"msg": "boom", "levelno": 40, "levelname": "ERROR"}))
        handler.tick()
        assert handler.mailer.flush(10)
    finally:
        handler.close()
        handler.mailer.close()
    [mail] = fake_gmail.messages
    assert mail["X-Postbud-Alert"] == "first"


def test_the_retry_policy_is_a_value() -> None:
    exact = RetryPolicy(base_delay=2.0, max_delay=10.0, jitter=False)
    assert [exact.delay(n, None) for n in range(4)] == [2.0, 4.0, 8.0, 10.0]
    assert exact.delay(3, retry_after=7.5) == 7.5
    jittered = RetryPolicy(base_delay=1.0)
    assert all(0 <= jittered.delay(3, None) <= 8.0 for _ in range(100))
    with pytest.raises(AttributeError):
        exact.base_delay = 5  # type: ignore[misc]


def test_a_transport_that_is_falsy_is_still_the_callers(fake_gmail: FakeGmail) -> None:
    from postbud.testing import MemoryTransport

    class Collecting(MemoryTransport):
        def __len__(self) -> int:  # an empty collection is falsy
            return len(self.messages)

    transport = Collecting()
    with Mailer(fake_gmail.settings(spool=None), transport=transport) as mailer:
        mailer.send(TO, "kept as given", "x")
    assert [m["Subject"] for m in transport.messages] == ["kept as given"]


def test_an_outbox_opened_to_read_starts_no_worker_even_to_revive(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = str(tmp_path / "outbox.sqlite")
    fake_gmail.bad_recipients = {"gone@example.com"}
    with fake_gmail.mailer(spool=spool) as mailer:
        mailer.submit("gone@example.com", "dead", "x")
        assert mailer.flush(10)
    fake_gmail.bad_recipients = set()
    reader = postbud._outbox.Outbox.open(fake_gmail.settings(spool=spool))
    try:
        assert reader.revive() == 1
        assert reader.thread is None  # revived, left for the next Mailer of the account
        assert [r.state for r in reader.rows()] == ["queued"]
    finally:
        reader.close(0)
    with fake_gmail.mailer(spool=spool) as mailer:  # which delivers it
        assert mailer.flush(10)
    assert [m["Subject"] for m in fake_gmail.messages] == ["dead"]


def test_a_context_loosened_under_the_worker_holds_the_queue_without_a_hot_loop(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    context = fake_gmail.ssl_context()
    settings = fake_gmail.settings()
    transport = postbud.SMTPTransport(settings, ssl_context=context)
    fast = RetryPolicy(base_delay=0.01, setup_pause=60.0)
    context.check_hostname = False  # loosened after it was given
    context.verify_mode = ssl.CERT_NONE
    with caplog.at_level(logging.WARNING, logger="postbud"):
        mailer = Mailer(settings, transport=transport, policy=fast)
        try:
            mailer.submit(TO, "waits", "x")
            time.sleep(0.5)
            [row] = mailer.outbox.rows()
            assert (row.state, row.attempts) == ("queued", 0)  # held, not dead, not lost
            assert row.next_try > time.time() + 30  # waits the pause, no loop
        finally:
            mailer.close(0)
    assert fake_gmail.commands == []  # nothing was sent over the loosened context
    assert caplog.text.count("cannot deliver") == 1
    assert "Traceback" not in caplog.text


def test_a_dead_letter_is_kept_for_mail_sent_from_memory(
    fake_gmail: FakeGmail, postbud_spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postbud._outbox import QueueBusy
    from postbud._outbox.spool import DiskSpool

    real_add = DiskSpool.add
    calls = [0]

    def busy_once(self: DiskSpool, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise QueueBusy("busy for this test")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(DiskSpool, "add", busy_once)
    fake_gmail.bad_recipients = {"bad@example.com"}
    with fake_gmail.mailer() as mailer:
        mailer.submit(["ok@example.com", "bad@example.com"], "half refused", "x")
        assert mailer.flush(10)
        assert mailer.stats()["spilled"] == 1  # it went out from memory
        [dead] = mailer.outbox.rows("dead")
    assert dead.recipients == ("bad@example.com",) and dead.last_code == 553
    assert [m.recipients for m in fake_gmail.messages] == [("ok@example.com",)]
