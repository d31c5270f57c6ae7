"""Alert state on a real redis-server: one fleet, one first alert, fail open, bounded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redistools import RedisServer, redis_server

import postbud
from postbud import AlertHandler
from postbud._outbox import RedisState, StateUnavailable
from postbud._outbox import redis_state as redis_state_module
from postbud._outbox.redis_state import DEADLINE
from postbud.alerts._policy import Counted, Mail, decide
from postbud.alerts._redis_store import RedisStore
from postbud.alerts._store import PRESENCE, STALE
from postbud.testing import FakeGmail

__all__ = ["redis_server"]  # the fixture, for the tests below

TO = "ops@example.com"
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
ACCOUNT = "me@gmail.com"
#: The circuit breaker's pause in these tests (3 s in production).
BREAK = 0.3


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def short_break(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(redis_state_module, "BREAK", BREAK)
    return BREAK


@pytest.fixture
def hosts(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., tuple[logging.Logger, AlertHandler]]]:
    """Handlers standing in for hosts: one Redis, each its own spool (or none)."""
    made: list[tuple[logging.Logger, AlertHandler]] = []

    def build(**overrides: Any) -> tuple[logging.Logger, AlertHandler]:
        where = {"spool": str(tmp_path / f"host{len(made)}.sqlite"), **overrides}
        values = fake_gmail.settings_values(
            state=redis_server.url, state_password=redis_server.password, **where
        )
        handler = AlertHandler(TO, **values)
        logger = logging.getLogger(f"host{len(made)}")
        logger.propagate = False
        logger.handlers[:] = [handler]
        made.append((logger, handler))
        return logger, handler

    yield build
    for logger, handler in made:
        logger.handlers[:] = []
        handler.close()


def fail(logger: logging.Logger, n: int = 1) -> None:
    for i in range(n):
        try:
            raise ConnectionError("database is down")
        except ConnectionError:
            logger.exception("query %s failed", i)


def kinds(fake: FakeGmail) -> list[tuple[str | None, int]]:
    return [(m["X-Postbud-Alert"], int(m["X-Postbud-Count"] or 0)) for m in fake.messages]


def settle(*handlers: AlertHandler) -> None:
    for handler in handlers:
        handler.tick()
    for handler in handlers:
        assert handler.mailer.flush(10)


def alert_keys(server: RedisServer) -> list[str]:
    return sorted(server.client().scan_iter(match="postbud:*:alerts:*", count=1000))


# -- a fleet ---------------------------------------------------------------------------

CHILD = r"""
import json, logging, os, sys, time
import postbud
cfg = json.loads(sys.argv[1])
handler = postbud.AlertHandler("ops@example.com", **cfg["settings"])
log = logging.getLogger("worker")
log.addHandler(handler)
log.propagate = False
while not os.path.exists(cfg["go"]):
    time.sleep(0.005)
for i in range(cfg["n"]):
    try:
        raise ValueError("database is down")
    except ValueError:
        log.exception("query failed")
handler.tick()
open(cfg["ready"], "w").close()
while not os.path.exists(cfg["close"]):
    time.sleep(0.005)
handler.close()
print(json.dumps(handler.stats()), flush=True)
"""


def test_eight_hosts_send_one_first_alert_and_one_follow_up_with_the_sum(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    n, fleet = 25, 8
    go, close = tmp_path / "go", tmp_path / "close"
    children = []
    for k in range(fleet):
        values = fake_gmail.settings_values(
            state=redis_server.url,
            state_password=redis_server.password,
            spool=str(tmp_path / f"host{k}.sqlite"),  # a host: its own disk
        )
        cfg = {"settings": values, "go": str(go), "close": str(close), "n": n}
        cfg["ready"] = str(tmp_path / f"ready{k}")
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(cfg)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    go.write_text("go")  # they log at about the same moment
    deadline = time.monotonic() + 30
    client = redis_server.client()
    while True:  # every host counted and keeps a heartbeat: none closes alone
        ready = all((tmp_path / f"ready{k}").exists() for k in range(fleet))
        here = [key for key in alert_keys(redis_server) if key.endswith(":here")]
        if ready and here and client.zcard(here[0]) == fleet:
            break
        assert time.monotonic() < deadline, [c.poll() for c in children]
        time.sleep(0.02)
    close.write_text("close")
    records = 0
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "Traceback" not in err, err
        records += json.loads(out.strip().splitlines()[-1])["records"]
    assert records == fleet * n
    got = kinds(fake_gmail)
    assert sorted(got) == [("first", 1), ("follow-up", fleet * n - 1)], got
    assert [m.recipients for m in fake_gmail.messages] == [(TO,), (TO,)]


def test_shared_state_on_redis_with_the_queue_in_memory(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]], fake_gmail: FakeGmail
) -> None:
    (one, first), (two, second) = hosts(spool=None), hosts(spool=None)
    assert first.mailer.outbox.spool is None
    fail(one, 3)
    fail(two, 2)
    settle(first, second)
    assert kinds(fake_gmail) == [("first", 1)]  # one mail for both hosts
    first.close()
    assert kinds(fake_gmail) == [("first", 1)]  # the other one still runs: it reports
    second.close()
    assert kinds(fake_gmail) == [("first", 1), ("follow-up", 4)]


# -- Redis away --------------------------------------------------------------------------


def test_redis_stopped_mid_run_alerts_fail_open_then_merge_without_doubles(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]],
    fake_gmail: FakeGmail,
    redis_server: RedisServer,
    short_break: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    # One host keeps its queue in memory, the other in its spool.
    (one, first), (two, second) = hosts(spool=None), hosts()
    first._clock = second._clock = clock
    fail(one, 3)
    settle(first)
    fail(two, 2)
    settle(second)
    assert kinds(fake_gmail) == [("first", 1)]  # 4 more pending on Redis

    redis_server.client().config_set("save", "3600 1")  # kept across the restart (AOF)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        fail(one, 4)
        fail(two, 1)
        one.error("a new kind during the outage")
        settle(first, second)  # no exception, no wait
    # Fail open: the new kind is mailed by the host that saw it; the known one, whose
    # cooldown both hosts saw running, is counted, not mailed again as "first".
    assert kinds(fake_gmail) == [("first", 1), ("first", 1)]
    assert any("counts and mails alerts alone" in r.getMessage() for r in caplog.records)
    assert all(redis_server.password not in r.getMessage() for r in caplog.records)

    redis_server.start()
    time.sleep(short_break + 0.1)
    settle(first, second)  # back: what each counted alone is merged
    assert first._ticker._local is None and second._ticker._local is None
    assert len(fake_gmail.messages) == 2

    clock.now += 601  # the cooldown of the first alert ends: one follow-up, the sum
    settle(first, second)
    first.close()
    second.close()
    got = kinds(fake_gmail)
    assert got == [("first", 1), ("first", 1), ("follow-up", 9)], got
    assert sum(count for _, count in got) == 3 + 2 + 4 + 1 + 1  # every record, once
    assert first.stats()["records"] + second.stats()["records"] == 11


def test_redis_restarted_without_its_data_does_not_mail_a_known_error_as_new(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]],
    fake_gmail: FakeGmail,
    redis_server: RedisServer,
    short_break: float,
) -> None:
    clock = Clock()
    logger, handler = hosts()
    handler._clock = clock
    fail(logger, 1)
    settle(handler)
    redis_server.stop()  # no persistence: every key is gone
    redis_server.start()
    time.sleep(short_break + 0.1)
    fail(logger, 2)
    settle(handler)  # the cooldowns this host saw go back to Redis
    assert kinds(fake_gmail) == [("first", 1)]
    clock.now += 601
    settle(handler)
    assert kinds(fake_gmail) == [("first", 1), ("follow-up", 2)]


def test_a_handler_closing_while_redis_is_down_reports_its_own_counts(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]],
    fake_gmail: FakeGmail,
    redis_server: RedisServer,
) -> None:
    logger, handler = hosts()
    fail(logger, 1)
    settle(handler)
    redis_server.stop()
    fail(logger, 2)
    handler.close()  # nothing waits for Redis: memory reports what this process counted
    assert kinds(fake_gmail) == [("first", 1), ("follow-up", 2)]


def test_a_hung_redis_costs_one_short_deadline_and_never_blocks_logging(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]],
    fake_gmail: FakeGmail,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from postbud.alerts._ticker import Ticker

    ticks: list[float] = []
    run = Ticker.run

    def timed(self: Ticker, force: bool, leaving: bool, paced: bool = False) -> None:
        start = time.monotonic()
        try:
            run(self, force, leaving, paced)
        finally:
            ticks.append(time.monotonic() - start)

    monkeypatch.setattr(Ticker, "run", timed)
    logger, handler = hosts()
    fail(logger, 1)
    settle(handler)
    redis_server.pause()  # accepts connections, answers nothing
    try:
        ticks.clear()
        slowest = 0.0
        logger.error("a new kind while Redis hangs")  # wakes the handler's thread
        ends = time.monotonic() + 2 * DEADLINE
        while time.monotonic() < ends:  # the thread's tick waits for Redis meanwhile
            start = time.monotonic()
            fail(logger, 1)
            slowest = max(slowest, time.monotonic() - start)
        handler.tick()
        assert handler.mailer.flush(10)  # fail open: the new kind went out
    finally:
        redis_server.resume()
    assert slowest < 0.05  # emit touches only memory
    # A tick met the hung server (one short deadline), the others the open breaker.
    assert 0.8 * DEADLINE <= max(ticks) < DEADLINE + 0.4, ticks
    assert [k for k, _ in kinds(fake_gmail)] == ["first", "first"]


# -- what is on the server ---------------------------------------------------------------


def test_every_key_written_expires(
    hosts: Callable[..., tuple[logging.Logger, AlertHandler]],
    fake_gmail: FakeGmail,
    redis_server: RedisServer,
) -> None:
    logger, handler = hosts(alert_cap=2)
    logger.error("mailed once: cooling")
    fail(logger, 2)  # mailed, one pending
    logger.error("past the cap: in the digest")
    settle(handler)
    assert [k for k, _ in kinds(fake_gmail)] == ["first", "first"]
    keys = alert_keys(redis_server)
    suffixes = {key.rsplit(":", 1)[-1] for key in keys}
    assert {"rows", "pending", "digest", "cooling", "here"} <= suffixes
    assert any(":tick:" in key for key in keys)
    client = redis_server.client()
    for key in keys:
        ttl = client.ttl(key)
        limit = 2 * PRESENCE if key.endswith(":here") else STALE
        assert 0 < ttl <= limit, (key, ttl)
    account = fake_gmail.username
    assert all(key.startswith(f"postbud:{{{account}}}:alerts:") for key in keys)
    handler.close()  # its token and its heartbeat go with it
    left = alert_keys(redis_server)
    assert not any(":tick:" in key or key.endswith(":here") for key in left), left


# -- the store itself ---------------------------------------------------------------------


@pytest.fixture
def state(redis_server: RedisServer) -> Iterator[RedisState]:
    s = postbud.Settings(
        username=ACCOUNT,
        app_password="abcd efgh ijkl mnop",
        spool=None,
        state=redis_server.url,
        state_password=redis_server.password,
    )
    store = RedisState(s)
    yield store
    store.close()


def counted(n: int, prefix: str = "k", at: float = T0) -> dict[str, Counted]:
    return {f"{prefix}{i}": Counted(1, at, at, {"at": at}, {"at": at}) for i in range(n)}


def deciding(seen: list[int], now: float) -> Any:
    def spy(scope: Any, rows: Any, firsts: Any, force: bool) -> list[Mail]:
        seen.append(len(rows))
        return decide(
            scope, rows, firsts, now, cooldown=600, cap=1, digests_only=False, force=force
        )

    return spy


def commit_to(sent: list[Any]) -> Callable[[list[Mail], Any], None]:
    def commit(mails: list[Mail], enqueue: Any) -> None:
        for mail in mails:
            enqueue(mail)  # the ticker renders an envelope; the kind and count do here

    return commit


def test_a_storm_of_100000_fingerprints_keeps_each_tick_bounded(state: RedisState) -> None:
    sent: list[Any] = []
    seen: list[int] = []
    storm = RedisStore(state, ACCOUNT, "storm", "host-a", sent.append)
    for batch in range(10):  # 100,000 kinds, one tick per 10,000
        storm.run(counted(10_000, f"b{batch}-"), T0, 600, deciding(seen, T0), commit_to(sent))
    assert [(m.kind, m.count) for m in sent] == [("first", 1)]  # the rest: the digest
    assert storm.loaded == 0  # the batches loaded no row of the earlier ones

    elsewhere: list[Any] = []
    small = RedisStore(state, ACCOUNT, "small", "host-a", elsewhere.append)
    small.run(counted(10, "s"), T0, 600, deciding([], T0), commit_to([]))
    start = time.perf_counter()
    small.run(counted(1, "new"), T0 + 1, 600, deciding([], T0 + 1), commit_to([]))
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    due = storm.run(counted(1, "new"), T0 + 1, 600, deciding(seen, T0 + 1), commit_to(sent))
    took = time.perf_counter() - start
    assert seen[-1] == 1 and storm.loaded == 0  # one row, not 100,000
    assert due == T0 + 3600  # and it still knows the digest is due
    assert took < 20 * baseline + 0.05, (took, baseline)

    storm.run({}, T0 + 3600, 600, deciding(seen, T0 + 3600), commit_to(sent))
    assert seen[-1] == 100_000  # the digest tick reads them all, once
    assert [(m.kind, m.count) for m in sent][-1] == ("digest", 100_000)
    # Reported rows are forgotten, and so is the mailed one, whose cooldown ended.
    assert state.client.hlen(storm.keys["rows"]) == 0


@pytest.mark.parametrize("outage", ["hangs", "stops"])
def test_a_write_whose_answer_is_lost_is_applied_once(
    state: RedisState, redis_server: RedisServer, short_break: float, outage: str
) -> None:
    # Redis goes away between the read and the EXEC: the write may or may not have been
    # applied. The store holds its counts and mails until Redis says which.
    sent: list[Any] = []
    store = RedisStore(state, ACCOUNT, "unsure", "host-a", sent.append)
    store.run(counted(1, "seed"), T0, 600, deciding([], T0), commit_to(sent))
    if outage == "stops":
        redis_server.client().config_set("save", "3600 1")  # the restart keeps the data
    seen: list[int] = []
    spy = deciding(seen, T0)

    def decide_then_fail(scope: Any, rows: Any, firsts: Any, force: bool) -> list[Mail]:
        if outage == "hangs":
            redis_server.pause()
        else:
            redis_server.stop()
        return spy(scope, rows, firsts, force)

    with pytest.raises(StateUnavailable):
        store.run(counted(5, "k"), T0, 600, decide_then_fail, commit_to(sent))
    assert len(sent) == 1  # held: not sent yet
    if outage == "hangs":
        redis_server.resume()
    else:
        redis_server.start()
    time.sleep(short_break + 0.1)
    store.run({}, T0 + 1, 600, deciding(seen, T0 + 1), commit_to(sent))
    store.run({}, T0 + 2, 600, deciding(seen, T0 + 2), commit_to(sent))
    assert len(sent) == 1  # the cap (1) was used by the seed: the five wait for the digest
    store.run({}, T0 + 3600, 600, deciding(seen, T0 + 3600), commit_to(sent))
    assert [(m.kind, m.count) for m in sent][1:] == [("digest", 5)]
