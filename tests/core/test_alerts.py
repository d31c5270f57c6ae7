"""AlertHandler against FakeGmail: first alert, follow-up, cap, digest, counts, content."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from postbud import AlertHandler, ConfigurationError, Mailer
from postbud._mask import mask_argv, mask_text
from postbud.alerts._record import _value, fingerprint
from postbud.testing import FakeGmail, ReceivedMessage

TO = "ops@example.com"
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_settings(fake: FakeGmail, **overrides: Any) -> dict[str, Any]:
    return fake.settings_values(**overrides)


Make = Callable[..., tuple[logging.Logger, AlertHandler]]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """dictConfig and fileConfig change loggers for good: put them back after each test."""
    manager = logging.Logger.manager
    loggers = [
        logging.getLogger(),
        *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    saved = [(x, list(x.handlers), x.level, x.propagate, x.disabled) for x in loggers]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(fake_gmail: FakeGmail, clock: Clock, request: pytest.FixtureRequest) -> Iterator[Make]:
    made: list[tuple[logging.Logger, AlertHandler]] = []

    def build(**kwargs: Any) -> tuple[logging.Logger, AlertHandler]:
        to = kwargs.pop("to", TO)
        handler = AlertHandler(to=to, clock=clock, **fake_settings(fake_gmail, **kwargs))
        logger = logging.getLogger(f"app.t{len(made)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, handler

    yield build
    for logger, handler in made:
        logger.removeHandler(handler)
        handler.close()


def mails(handler: AlertHandler, fake: FakeGmail) -> list[ReceivedMessage]:
    """Tick, wait for the outbox, return what FakeGmail received."""
    handler.tick()
    assert handler.mailer.flush(10)
    return list(fake.messages)


def kinds(fake: FakeGmail) -> list[tuple[str | None, int]]:
    return [(m["X-Postbud-Alert"], int(m["X-Postbud-Count"] or 0)) for m in fake.messages]


def fail(logger: logging.Logger, n: int = 1, message: str = "query %s failed") -> None:
    for i in range(n):
        try:
            raise ConnectionError("database is down")
        except ConnectionError:
            logger.exception(message, i)


# -- storm control ---------------------------------------------------------------------


@pytest.mark.parametrize("spool", ["disk", "memory"])
def test_first_alert_then_one_follow_up_with_the_count(
    make: Make, fake_gmail: FakeGmail, clock: Clock, spool: str
) -> None:
    logger, handler = make(**({"spool": None} if spool == "memory" else {}))
    fail(logger, 5)
    [first] = mails(handler, fake_gmail)
    assert first["Subject"] == "[ERROR] app.t0: query 0 failed"
    assert (first["X-Postbud-Alert"], first["X-Postbud-Count"]) == ("first", "1")
    assert first.recipients == (TO,)
    assert "ConnectionError: database is down" in (first.text or "")

    clock.advance(300)  # still inside the 600 s cooldown: counted, not mailed
    fail(logger, 2)
    assert len(mails(handler, fake_gmail)) == 1

    clock.advance(301)
    follow = mails(handler, fake_gmail)[-1]
    assert follow["X-Postbud-Alert"] == "follow-up"
    assert follow["Subject"] == "[ERROR] app.t0: query 1 failed (6 more since 08:00 UTC)"
    text = follow.text or ""
    assert "This error happened 6 more time(s) since 08:00 UTC" in text
    assert "the last at 2027-01-15 08:05:00 UTC" in text
    assert "Message: query 1 failed" in " ".join(text.split())  # the last occurrence
    assert sum(n for _, n in kinds(fake_gmail)) == 7

    clock.advance(601)  # the cooldown ended with nothing pending: no mail
    assert len(mails(handler, fake_gmail)) == 2
    fail(logger, 1)  # the next occurrence is a first alert again
    assert kinds_after(handler, fake_gmail)[-1] == ("first", 1)


def test_past_the_cap_alerts_go_into_one_digest_per_hour(
    make: Make, fake_gmail: FakeGmail, clock: Clock
) -> None:
    logger, handler = make(alert_cap=3)
    for n in range(8):
        logger.error("distinct error number " + str(n))  # eight different templates
        clock.advance(1)
    assert [s for s, _ in kinds_after(handler, fake_gmail)] == ["first"] * 3

    clock.advance(3600)
    digest = mails(handler, fake_gmail)[-1]
    assert (digest["X-Postbud-Alert"], digest["X-Postbud-Count"]) == ("digest", "5")
    assert digest["Subject"] == "Alert digest: 5 alert(s) of 5 kind(s) since 08:00 UTC"
    text = digest.text or ""
    for n in range(3, 8):
        assert f"distinct error number {n}" in text
    for n in range(3):
        assert f"distinct error number {n}" not in text
    assert sum(n for _, n in kinds(fake_gmail)) == 8


@pytest.mark.parametrize("spool", ["disk", "memory"])
def test_a_digest_gathers_kinds_from_many_ticks_and_goes_out_on_its_own(
    make: Make, fake_gmail: FakeGmail, clock: Clock, spool: str
) -> None:
    # Ticks between window ends load only rows with pending counts; the digest rows
    # left out must still make the thread send the digest when the window ends.
    logger, handler = make(alert_cap=1, **({"spool": None} if spool == "memory" else {}))
    for tick in range(5):
        for n in range(4):
            logger.error("kind " + str(tick) + "." + str(n))
        handler.tick()
        clock.advance(60)
    assert kinds_after(handler, fake_gmail) == [("first", 1)]
    clock.advance(3600)  # no tick from the test: the handler's thread sees it is due
    handler._wake.set()
    deadline = time.monotonic() + 10
    while len(fake_gmail.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    digest = fake_gmail.messages[-1]
    assert (digest["X-Postbud-Alert"], digest["X-Postbud-Count"]) == ("digest", "19")
    assert "19 alert(s) of 19 kind(s)" in (digest.text or "")
    assert sum(n for _, n in kinds(fake_gmail)) == 20


def test_a_tick_copies_only_the_rows_it_may_change() -> None:
    from postbud.alerts._policy import Counted, decide
    from postbud.alerts._store import MemoryStore

    store, seen = MemoryStore(), []

    def spy(scope: Any, rows: Any, firsts: Any, force: bool) -> Any:
        seen.append(len(rows))
        return decide(scope, rows, firsts, T0, cooldown=600, cap=1, digests_only=False, force=force)

    def counted(n: int, prefix: str = "k") -> dict[str, Counted]:
        return {f"{prefix}{i}": Counted(1, T0, T0, {"at": T0}, {"at": T0}) for i in range(n)}

    store.run(counted(10_000), T0, 600, spy, lambda mails, enqueue: None)
    due = store.run(counted(1, "new"), T0, 600, spy, lambda mails, enqueue: None)
    idle = store.run({}, T0 + 1, 600, spy, lambda mails, enqueue: None)
    # 10,000 rows wait for the digest; the next ticks copied one row and none, and
    # still know when the window's digest is due.
    assert seen == [10_000, 1, 0] and due == idle == T0 + 3600
    sent: list[Any] = []
    store.run({}, T0, 600, spy, lambda mails, enqueue: sent.extend(mails), force=True)
    assert seen[-1] == 10_000 and [(m.kind, m.count) for m in sent] == [("digest", 10_000)]
    # The one mailed row cools down, then is forgotten without a scan of every row.
    assert len(store._rows) == 1
    store.run({}, T0 + 601, 600, spy, lambda mails, enqueue: None)
    assert store._rows == {} and store._cooling == []


def test_flush_does_not_wait_for_a_storm_tick_to_pace_itself(
    make: Make, fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postbud.alerts import _ticker

    # The handler's thread describes a storm in slices and pauses between them; a
    # flush (or close) waiting for that tick makes it stop pausing.
    monkeypatch.setattr(_ticker, "SLICE", 0.0)
    monkeypatch.setattr(_ticker, "PAUSE", 600.0)
    logger, handler = make(alert_cap=2)
    for n in range(50):
        logger.error("storm kind " + str(n))
    handler.flush()  # without the hurry, 50 pauses of 600 s
    got = kinds(fake_gmail)
    assert got[:2] == [("first", 1), ("first", 1)] and sum(n for _, n in got) == 50


def kinds_after(handler: AlertHandler, fake: FakeGmail) -> list[tuple[str | None, int]]:
    mails(handler, fake)
    return kinds(fake)


def test_follow_ups_count_against_the_cap(make: Make, fake_gmail: FakeGmail, clock: Clock) -> None:
    logger, handler = make(alert_cap=2, alert_cooldown=60)
    fail(logger, 3)
    logger.error("second kind")
    assert kinds_after(handler, fake_gmail) == [("first", 1), ("first", 1)]
    clock.advance(61)  # the follow-up is due but the cap is used up: it joins the digest
    assert kinds_after(handler, fake_gmail) == [("first", 1), ("first", 1)]
    clock.advance(3600)
    assert kinds_after(handler, fake_gmail)[-1] == ("digest", 2)


def test_flush_reports_pending_counts_and_the_digest_now(make: Make, fake_gmail: FakeGmail) -> None:
    logger, handler = make(alert_cap=1)
    fail(logger, 4)
    logger.error("over the cap")
    handler.tick()
    handler.flush()
    assert kinds(fake_gmail) == [("first", 1), ("digest", 4)]
    handler.flush()  # nothing left: nothing more
    assert len(fake_gmail.messages) == 2


def test_close_sends_the_follow_up_and_closes_its_own_mailer(
    make: Make, fake_gmail: FakeGmail
) -> None:
    logger, handler = make()
    fail(logger, 10)
    handler.close()
    assert kinds(fake_gmail) == [("first", 1), ("follow-up", 9)]
    assert handler.mailer.outbox.thread is None  # the owned Mailer was closed
    logger.error("after close")  # counted nowhere, and no error
    handler.close()  # twice is fine


def test_a_mailer_passed_in_is_not_closed(fake_gmail: FakeGmail) -> None:
    mailer = fake_gmail.mailer()
    handler = AlertHandler(TO, mailer=mailer)
    handler.handle(logging.makeLogRecord({"msg": "x", "levelno": 40, "levelname": "ERROR"}))
    handler.close()
    assert [m["X-Postbud-Alert"] for m in fake_gmail.messages] == ["first"]
    mailer.send(TO, "still usable", "yes")
    mailer.close()


def test_over_the_alert_share_of_the_quota_only_digests_go_out(
    make: Make, fake_gmail: FakeGmail, clock: Clock
) -> None:
    # 1 alert recipient of a daily limit of 10 is the whole 10 % share.
    logger, handler = make(daily_limit=10, alert_max_share=0.1)
    logger.error("first kind")
    assert kinds_after(handler, fake_gmail) == [("first", 1)]
    logger.error("second kind")
    logger.error("third kind")
    assert kinds_after(handler, fake_gmail) == [("first", 1)]
    clock.advance(3600)
    assert kinds_after(handler, fake_gmail) == [("first", 1), ("digest", 2)]


def test_a_storm_from_four_threads_adds_up_exactly(
    make: Make, fake_gmail: FakeGmail, clock: Clock
) -> None:
    logger, handler = make(alert_cap=5)
    per_thread, kinds_n = 2_000, 25

    def storm(offset: int) -> None:
        for i in range(per_thread):
            try:
                raise KeyError(i)
            except KeyError:
                logger.exception("kind " + str((i + offset) % kinds_n))

    threads = [threading.Thread(target=storm, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for _ in range(12):  # an hour and more passes while they log
        clock.advance(400)
        handler.tick()
    for t in threads:
        t.join()
    handler.close()
    got = kinds(fake_gmail)
    assert sum(n for _, n in got) == 4 * per_thread
    assert sum(1 for k, _ in got if k != "digest") <= 5 * 3  # the cap, per window
    assert handler.stats()["records"] == 4 * per_thread


CHILD = r"""
import json, logging, sys
import postbud
settings = json.loads(sys.argv[1])
handler = postbud.AlertHandler("ops@example.com", **settings)
log = logging.getLogger("worker")
log.addHandler(handler)
log.propagate = False
for i in range(50):
    try:
        raise ValueError("database is down")
    except ValueError:
        log.exception("query failed")
handler.close()
"""


def test_two_processes_on_one_spool_send_one_first_alert(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    settings = json.dumps(fake_settings(fake_gmail, spool=str(tmp_path / "shared.sqlite")))
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, settings], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "cannot use the spool" not in err  # a fresh file, opened by both at once
    got = kinds(fake_gmail)
    assert [k for k, _ in got].count("first") == 1, got
    assert sum(n for _, n in got) == 100


# -- content ------------------------------------------------------------------------------


class StrictHTML(HTMLParser):
    ALLOWED: ClassVar = {"html", "head", "meta", "title", "body"} | {
        "p",
        "table",
        "tr",
        "th",
        "td",
        "pre",
    }
    VOID: ClassVar = {"meta"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            self.problems.append(f"tag {tag}")
        for name, value in attrs:
            if name not in ("style", "charset") or "url(" in (value or ""):
                self.problems.append(f"attribute {name}={value}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced {tag}")


def check_html(page: str) -> None:
    parser = StrictHTML()
    parser.feed(page)
    parser.close()
    assert parser.problems == [] and parser.stack == []


def test_record_text_is_escaped_and_the_html_is_clean(
    make: Make, fake_gmail: FakeGmail, clock: Clock
) -> None:
    logger, handler = make(alert_cap=1)
    logger.error('<a href="https://evil.example">click</a> & <script>alert(1)</script>')
    logger.error("<img src=x> second kind")
    handler.flush()
    first, digest = fake_gmail.messages
    for received in (first, digest):
        page = received.html or ""
        check_html(page)
        assert "&lt;" in page
        assert "<a " not in page and "<script" not in page and "<img" not in page
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;click&lt;/a&gt; &amp;" in (
        first.html or ""
    )
    assert '<a href="https://evil.example">click</a>' in (first.text or "")


def test_secrets_in_extras_argv_and_text_are_masked(
    make: Make, fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["app.py", "--password=pw-argv-1", "--token", "tk-argv-2", "--user", "bob"]
    )
    logger, handler = make()
    logger.error(
        "login failed, api_key=ak-msg-3",
        extra={
            "password": "pw-extra-4",
            "request": {"headers": {"Authorization": "Bearer au-5"}, "path": "/login"},
            "dsn": "postgres://app:pw-url-6@db/main",
            "user_id": 42,
        },
    )
    [received] = mails(handler, fake_gmail)
    raw = received.data.decode("utf-8", "replace")
    for secret in ("pw-argv-1", "tk-argv-2", "ak-msg-3", "pw-extra-4", "au-5", "pw-url-6"):
        assert secret not in raw
    text = received.text or ""
    assert "--password=******** --token ******** --user bob" in text
    assert "extra: user_id:  42" in text
    assert "'path': '/login'" in text
    assert "postgres://app:********@db/main" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc", "Authorization: ******** ********"),
        ('{"password": "pw-1", "user": "bob"}', '{"password": ********, "user": "bob"}'),
        ("{'api_key': 'k-2'}", "{'api_key': ********}"),
        ("redis://:pw-3@cache:6379/0", "redis://:********@cache:6379/0"),
        ("s3?X-Amz-Signature=abc&sig=def&id=7", "s3?X-Amz-Signature=********&sig=********&id=7"),
        ("token expired for user 7", "token expired for user 7"),
    ],
)
def test_free_text_is_masked(text: str, shown: str) -> None:
    assert mask_text(text) == shown


def test_nested_extras_are_masked_at_any_depth() -> None:
    loop: dict[str, object] = {"password": "pw-loop"}
    loop["self"] = loop
    value = {
        "a": {"b": {"c": {"d": {"e": {"secret": "deep-1"}}}}},
        "headers": [("Authorization", "Basic dXNlcjpwYXNz"), ("Accept", "*/*")],
        "rows": [{"token": "t-2"}],
        "loop": loop,
    }
    shown = _value("request", value)
    for secret in ("deep-1", "dXNlcjpwYXNz", "t-2", "pw-loop"):
        assert secret not in shown
    assert "'Accept', '*/*'" in shown


def test_a_record_that_cannot_be_encoded_is_still_mailed(make: Make, fake_gmail: FakeGmail) -> None:
    logger, handler = make(subject="{message[0]}: {level}")
    logger.error("file caf\udce9.csv failed\x00 badly")  # a lone surrogate and a NUL
    logger.error("")  # {message[0]} of an empty message
    mails(handler, fake_gmail)
    got = [m["Subject"] or "" for m in fake_gmail.messages]
    assert len(got) == 2
    assert "caf\\udce9.csv" in (fake_gmail.messages[0].text or "")
    assert got[1].startswith("[ERROR] app.t0:")  # the default template stood in


def test_records_logged_while_emit_runs_are_ignored(make: Make, fake_gmail: FakeGmail) -> None:
    logger, handler = make()

    class Noisy:
        def __str__(self) -> str:
            logger.error("logged from __str__")
            return "noisy"

    # Straight to the handler: pytest's own handlers would format (and count) it too.
    handler.handle(logging.LogRecord("app", logging.ERROR, __file__, 1, "%s", (Noisy(),), None))
    assert handler.stats()["records"] == 1


def test_handlers_with_different_levels_keep_their_own_counts(
    fake_gmail: FakeGmail, clock: Clock
) -> None:
    mailer = fake_gmail.mailer()
    errors = AlertHandler(TO, mailer=mailer, clock=clock)
    critical = AlertHandler(TO, level="CRITICAL", mailer=mailer, clock=clock)
    logger = logging.getLogger("two.handlers")
    logger.propagate = False
    logger.handlers[:] = [errors, critical]
    for _ in range(3):
        logger.critical("disk full")
    logger.handlers[:] = []
    errors.close()
    critical.close()
    mailer.close()
    assert sorted(kinds(fake_gmail)) == [("first", 1), ("first", 1)] + [("follow-up", 2)] * 2


def test_on_a_shared_spool_the_last_handler_to_close_reports(
    fake_gmail: FakeGmail, clock: Clock
) -> None:
    # Two handlers of one scope, as two gunicorn workers would have: the first to
    # close leaves its counts in the spool; the survivor reports them.
    first, second = (AlertHandler(TO, clock=clock, **fake_settings(fake_gmail)) for _ in range(2))
    first.name = second.name = "mail"  # as dictConfig names them
    one, two = logging.getLogger("worker.one"), logging.getLogger("worker.two")
    for logger, handler in ((one, first), (two, second)):
        logger.propagate = False
        logger.handlers[:] = [handler]
        fail(logger, 3)
    first.tick()
    second.tick()
    first.close()
    assert kinds(fake_gmail) == [("first", 1)]  # no follow-up: worker two still runs
    second.close()
    assert kinds(fake_gmail) == [("first", 1), ("follow-up", 5)]
    one.handlers[:] = two.handlers[:] = []


def test_after_fork_the_child_forgets_the_parents_counts(make: Make) -> None:
    logger, handler = make(spool=None)
    fail(logger, 4)
    handler.tick()
    handler._after_fork()  # what os.fork() runs in the child
    assert handler.stats()["records"] == 0
    assert handler._ticker.store is None and handler._deltas == {}


def test_mask_argv_keeps_harmless_options() -> None:
    assert mask_argv(["x", "--secret", "s", "-v", "--api-key=k", "--name=n", "TOKEN=t"]) == [
        "x",
        "--secret",
        "********",
        "-v",
        "--api-key=********",
        "--name=n",
        "TOKEN=********",
    ]


def test_the_body_has_the_context_an_operator_needs(make: Make, fake_gmail: FakeGmail) -> None:
    logger, handler = make()
    logger.error("cache miss storm", stack_info=True, extra={"shard": 7})
    [received] = mails(handler, fake_gmail)
    text, page = received.text or "", received.html or ""
    for label in ("Level:", "Logger:", "Time:", "Where:", "Host:", "Process:", "Thread:"):
        assert label in text
    assert "2027-01-15 08:00:00 UTC" in text and "local)" in text
    assert "Python:" in text and ("CPython" in text or "PyPy" in text)
    assert "Stack:" in text and "test_the_body_has_the_context" in text
    assert "extra: shard: 7" in " ".join(text.split())
    assert "cache miss storm" in page and "Stack" in page
    check_html(page)


def test_subject_is_one_line_short_and_tagged(make: Make, fake_gmail: FakeGmail) -> None:
    logger, handler = make(alert_tag="prod")
    logger.error("line one\r\nline two " + "x" * 400)
    [received] = mails(handler, fake_gmail)
    subject = received["Subject"] or ""
    assert subject.startswith("[prod] [ERROR] app.t0: line one")
    assert "\n" not in subject and "line two" not in subject
    assert len(subject) <= 200


def test_a_custom_subject_template(fake_gmail: FakeGmail) -> None:
    handler = AlertHandler(TO, subject="{exc_type} on {host}", mailer=fake_gmail.mailer())
    try:
        raise RuntimeError("x")
    except RuntimeError:
        record = logging.LogRecord("a", 40, __file__, 1, "m", None, sys.exc_info())
    handler.handle(record)
    handler.close()
    assert (fake_gmail.messages[0]["Subject"] or "").startswith("RuntimeError on ")
    handler.mailer.close()


def test_fingerprint_ignores_arguments_and_library_frames() -> None:
    def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
        exc_info = None
        if exc:
            try:
                json.loads("{broken")  # raised deep inside the stdlib
            except ValueError:
                exc_info = sys.exc_info()
        return logging.LogRecord("a", 40, "/app/x.py", 7, msg, args, exc_info)

    assert fingerprint(record("user %s failed", 1)) == fingerprint(record("user %s failed", 2))
    assert fingerprint(record("user 1 failed")) != fingerprint(record("user 2 failed"))
    etype, filename, _line, template = fingerprint(record("bad json", exc=True))
    assert etype == "json.decoder.JSONDecodeError"
    assert (filename, template) == (__file__, "bad json")  # our frame, not json's


# -- never in the caller's way ----------------------------------------------------------------


def test_logging_never_raises_and_ignores_postbuds_own_records(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wrong app password: the worker's login fails and postbud logs warnings, which
    # propagate to the root logger this handler sits on at WARNING.
    handler = AlertHandler(TO, level="WARNING", **fake_settings(fake_gmail, app_password="wrong"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("app").error("something broke")
        bad = logging.LogRecord("app", logging.ERROR, __file__, 1, "%d", ("x",), None)
        handler.handle(bad)  # its message cannot be formatted: handleError, no exception
        handler.tick()
        handler.mailer.flush(5)
        assert any(r.name == "postbud" and r.levelno >= logging.WARNING for r in caplog.records)
        assert handler.stats()["records"] == 1  # neither postbud's warnings nor the bad record
    finally:
        root.removeHandler(handler)
        handler.close()
    assert "--- Logging error ---" in capsys.readouterr().err
    assert fake_gmail.messages == []


def test_with_the_server_down_logging_returns_and_counts(clock: Clock, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        handler = AlertHandler(
            TO,
            username="me@gmail.com",
            app_password="abcd efgh ijkl mnop",
            host="127.0.0.1",
            port=port,
            timeout=1,
            exit_timeout=0.2,
            clock=clock,
        )
        logger = logging.getLogger("down")
        logger.addHandler(handler)
        try:
            fail(logger, 100)
            handler.tick()
            assert handler.stats() == {"records": 100, "first": 1, "follow-up": 0, "digest": 0}
        finally:
            logger.removeHandler(handler)
            handler.close()
        assert handler.mailer.stats()["queued"] == 2  # the first alert and the follow-up wait


# -- configuration ------------------------------------------------------------------------------


def test_dict_config_builds_a_working_handler(fake_gmail: FakeGmail) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "mail": {
                "class": "postbud.AlertHandler",
                "level": "ERROR",
                "to": "ops@example.com, dev@example.com",
                "subject": "{level} in {logger}: {message}",
                "alert_tag": "prod",
                **fake_settings(fake_gmail),
            }
        },
        "loggers": {"dictapp": {"handlers": ["mail"], "propagate": False}},
    }
    logging.config.dictConfig(config)
    logger = logging.getLogger("dictapp")
    [handler] = logger.handlers
    try:
        logger.error("disk full")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    [received] = fake_gmail.messages
    assert received["Subject"] == "[prod] ERROR in dictapp: disk full"
    assert received.recipients == ("ops@example.com", "dev@example.com")


def test_file_config_builds_a_working_handler(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    settings = fake_settings(fake_gmail)
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            f"""
            [loggers]
            keys=root,fileapp
            [handlers]
            keys=mail
            [formatters]
            keys=
            [logger_root]
            handlers=
            [logger_fileapp]
            handlers=mail
            qualname=fileapp
            propagate=0
            [handler_mail]
            class=postbud.AlertHandler
            level=ERROR
            args=('ops@example.com',)
            kwargs={settings!r}
            """
        )
    )
    logging.config.fileConfig(ini, disable_existing_loggers=False)
    logger = logging.getLogger("fileapp")
    [handler] = logger.handlers
    try:
        logger.critical("config from a file")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert [m["Subject"] for m in fake_gmail.messages] == ["[CRITICAL] fileapp: config from a file"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "not an address"}, "to: "),
        ({"level": "LOUD"}, "level: 'LOUD' is not a logging level"),
        ({"subject": "{lvl}: {message}"}, "it may name these fields: {level}"),
        ({"usrname": "x@gmail.com"}, "Did you mean username"),
        ({"alert_cap": 0}, "alert_cap"),
        ({"alert_cooldown": "soon"}, "alert_cooldown"),
    ],
)
def test_configuration_errors_fail_at_construction(
    fake_gmail: FakeGmail, kwargs: dict[str, Any], message: str
) -> None:
    values = fake_settings(fake_gmail)
    values.update(kwargs)
    if "usrname" in kwargs:
        del values["username"]
    with pytest.raises(ConfigurationError, match=message.replace("{", r"\{").replace("(", r"\(")):
        AlertHandler(**values)


def test_mailer_and_settings_together_are_refused(fake_gmail: FakeGmail) -> None:
    mailer = fake_gmail.mailer()
    with pytest.raises(ConfigurationError, match="either mailer= or settings"):
        AlertHandler(TO, mailer=mailer, alert_cap=5)
    mailer.close()


def test_from_the_environment_and_a_missing_username(
    fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="POSTBUD_USERNAME"):
        AlertHandler(TO)
    for key, value in fake_settings(fake_gmail).items():
        monkeypatch.setenv(f"POSTBUD_{key.upper()}", str(value))
    handler = AlertHandler()
    assert handler.to == (fake_gmail.username,)  # default: the account itself
    handler.close()


def test_dict_config_fails_loudly_on_a_typo(fake_gmail: FakeGmail) -> None:
    config = {
        "version": 1,
        "handlers": {
            "mail": {"class": "postbud.AlertHandler", "alert_cpa": 3, **fake_settings(fake_gmail)}
        },
    }
    with pytest.raises(ValueError, match="Unable to configure handler 'mail'") as info:
        logging.config.dictConfig(config)
    assert isinstance(info.value.__cause__, ConfigurationError)
    assert "alert_cap" in str(info.value.__cause__)


def test_a_storm_of_distinct_errors_is_held_bounded_and_still_adds_up(
    make: Make, fake_gmail: FakeGmail, clock: Clock
) -> None:
    from postbud.alerts._handler import MAX_HELD

    logger, handler = make(alert_cap=5)
    distinct = 3 * MAX_HELD
    for i in range(distinct):  # each message template is its own fingerprint
        logger.error("order " + str(i) + " failed")
    # The handler's thread may have taken counts meanwhile; it never holds more than
    # MAX_HELD fingerprints, and one count for the rest.
    assert len(handler._deltas) <= MAX_HELD + 1
    clock.advance(4000)
    handler.tick()
    handler.close()
    got = kinds(fake_gmail)
    assert sum(n for _, n in got) == distinct  # every occurrence counted, once
    texts = "\n".join(m.text or "" for m in fake_gmail.messages)
    assert "occurrence(s) of errors of other kinds: more distinct errors came" in texts


def test_close_warns_once_when_alerts_could_not_be_sent_in_time(
    fake_gmail: FakeGmail, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "alerts.sqlite"
    handler = AlertHandler(to=TO, **fake_settings(fake_gmail, spool=str(spool), exit_timeout=0.5))
    logger = logging.getLogger("app.unsent")
    logger.propagate = False
    logger.addHandler(handler)
    fake_gmail.delay(3, "CONNECT")  # Gmail is slow to answer: past exit_timeout
    try:
        logger.error("the database is down")
        with caplog.at_level(logging.WARNING, logger="postbud"):
            handler.close()
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in caplog.records if "could not send" in r.getMessage()]
    assert warnings == [
        "postbud's alert handler could not send 1 message(s) within 0.5 s at close; they "
        f"stay in the spool ({spool}) and go out with the next postbud process of this "
        "account ('postbud outbox status' shows them)."
    ]
    fake_gmail.delay(0)
    with Mailer(fake_gmail.settings(spool=str(spool))) as mailer:  # the next process
        assert mailer.flush(10)
    assert [m["X-Postbud-Alert"] for m in fake_gmail.messages][-1] == "first"
