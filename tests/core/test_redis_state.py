"""The shared state on a real redis-server: gates, the ledger, a fleet, an outage."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redistools import RedisServer, redis_server, redis_tls_server

import postbud
from postbud._outbox import RedisState, StateUnavailable
from postbud._outbox.redis_state import BREAK
from postbud._outbox.state import WINDOW, Gate, connect_gate, hold_gate
from postbud.testing import FakeGmail, MemoryTransport

__all__ = ["redis_server", "redis_tls_server"]  # the fixtures, for the tests below

PW = "abcd efgh ijkl mnop"
ACCOUNT = "me@gmail.com"


def settings(server: RedisServer, **overrides: Any) -> postbud.Settings:
    values: dict[str, Any] = {
        "username": ACCOUNT,
        "app_password": PW,
        "spool": None,
        "state": server.url,
        "state_password": server.password,
        **overrides,
    }
    return postbud.Settings(**values)


@pytest.fixture
def stores() -> Iterator[Callable[[postbud.Settings], RedisState]]:
    """Build RedisState stores (one per process they stand for), closed afterwards."""
    made: list[RedisState] = []

    def make(s: postbud.Settings) -> RedisState:
        made.append(RedisState(s))
        return made[-1]

    yield make
    for store in made:
        store.close()


def mailer(server: RedisServer, **overrides: Any) -> tuple[postbud.Mailer, MemoryTransport]:
    transport = MemoryTransport()
    return postbud.Mailer(settings(server, **overrides), transport=transport), transport


# -- the store's operations ------------------------------------------------------------


def test_gates_are_set_read_claimed_once_and_cleared(
    redis_server: RedisServer, stores: Callable[[postbud.Settings], RedisState]
) -> None:
    store = stores(settings(redis_server))
    other = stores(settings(redis_server))  # another process
    name = connect_gate(ACCOUNT, "smtp.gmail.com", 465)
    assert store.gate(name) is None
    gate = Gate(until=time.time() - 1, since=time.time() - 10, step=2, reason="refused")
    store.set_gate(name, gate)
    assert other.gate(name) == gate
    after = Gate(time.time() + 4, gate.since, 3, "refused")
    wins = [s.claim(name, gate.until, after) for s in (store, other)]
    assert wins == [True, False]  # of the processes that saw it end, one probes
    assert other.gate(name) == after
    key = f"postbud:{{{ACCOUNT}}}:gate:{name}"
    assert 0 < redis_server.client().ttl(key) <= 86400 + 10  # it expires a day after it ends
    pause = Gate(math.inf, time.time(), 1, "535 5.7.8", credential="abc")
    store.set_gate(name, pause)
    assert other.gate(name) == pause
    store.clear_gate(name)
    assert other.gate(name) is None
    assert redis_server.client().exists(key) == 0


def test_the_ledger_counts_over_a_rolling_day_and_expires(
    redis_server: RedisServer, stores: Callable[[postbud.Settings], RedisState]
) -> None:
    store = stores(settings(redis_server))
    other = stores(settings(redis_server))
    t0 = time.time()
    store.record(ACCOUNT, 3, False, t0)
    other.record(ACCOUNT, 2, True, t0 + 1)
    assert store.used(ACCOUNT, t0 + 2) == (5, 2, t0)
    assert other.used(ACCOUNT, t0 + WINDOW + 0.5) == (2, 2, t0 + 1)  # the first left
    assert store.used(ACCOUNT, t0 + WINDOW + 2) == (0, 0, None)
    client = redis_server.client()
    assert client.exists(f"postbud:{{{ACCOUNT}}}:totals") == 0  # nothing left to keep
    store.record(ACCOUNT, 1, False, t0)
    assert 0 < client.ttl(f"postbud:{{{ACCOUNT}}}:ledger") <= WINDOW + 3600


def test_the_outbox_uses_redis_when_state_is_a_redis_url(redis_server: RedisServer) -> None:
    first, sent = mailer(redis_server, daily_limit=3, alert_reserve=0)
    second, _ = mailer(redis_server, daily_limit=3, alert_reserve=0)
    assert isinstance(first.outbox.ledger.state, RedisState)
    with first, second:
        first.send(["a@example.com", "b@example.com"], "s", "x")
        second.send("c@example.com", "s", "x")
        with pytest.raises(postbud.QuotaExceededError):
            first.send("d@example.com", "s", "x")  # the two Mailers share one count
    assert sum(len(m.recipients) for m in sent.messages) == 2


def test_the_hold_is_shared(redis_server: RedisServer) -> None:
    first, _ = mailer(redis_server)
    second, _ = mailer(redis_server)
    with first, second:
        until = first.outbox.ledger.hold(time.time(), warn=False)
        assert second.outbox.ledger.held_until(time.time()) == pytest.approx(until)
    assert redis_server.client().exists(f"postbud:{{{ACCOUNT}}}:gate:{hold_gate(ACCOUNT)}")


@pytest.mark.parametrize("store", ["redis", "spool"])
def test_after_the_hold_one_process_of_the_fleet_probes(
    redis_server: RedisServer, tmp_path: Path, store: str
) -> None:
    where = {"spool": tmp_path / "shared.sqlite", "state": None} if store == "spool" else {}
    fleet = [mailer(redis_server, **where)[0] for _ in range(4)]
    ledgers = [m.outbox.ledger for m in fleet]
    now = time.time()
    ledgers[0].hold(now - 3601, warn=False)  # Gmail's block was an hour ago: probe now
    assert ledgers[1].held_until(now) is None  # a read only claims nothing
    answers = [ledger.held_until(now, probe=True) for ledger in ledgers]
    assert answers.count(None) == 1  # one probes...
    waits = [a for a in answers if a is not None]
    assert waits == [pytest.approx(now + ledgers[0].probe_window)] * 3  # ...the rest wait
    prober = ledgers[answers.index(None)]
    prober.record(1, False, time.time())  # the probe went through: the hold is over
    assert [ledger.held_until(time.time(), probe=True) for ledger in ledgers] == [None] * 4
    for m in fleet:
        m.close()


def test_without_redis_py_the_error_names_the_extra(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    with pytest.raises(postbud.MissingDependencyError) as info:
        postbud.Mailer(settings(redis_server), transport=MemoryTransport())
    assert "pip install 'postbud[redis]'" in str(info.value)


# -- an outage, in one process ---------------------------------------------------------


def test_an_outage_warns_once_never_raises_and_never_waits(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    m, sent = mailer(redis_server, daily_limit=20, alert_reserve=0)
    with m:
        m.send("a@example.com", "s", "x")
        redis_server.stop()
        slowest = 0.0
        with caplog.at_level(logging.INFO, logger="postbud"):
            for n in range(8):
                start = time.monotonic()
                m.send(f"b{n}@example.com", "s", "x")  # its share: all 19 left, one process
                slowest = max(slowest, time.monotonic() - start)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len([r for r in warnings if "cannot reach" in r.getMessage()]) == 1
        assert slowest < 0.1  # refused at once, then the breaker: no wait per call
        redis_server.start()
        time.sleep(BREAK + 0.1)
        with caplog.at_level(logging.INFO, logger="postbud"):
            m.send("c@example.com", "s", "x")
    assert len(sent.messages) == 10
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # Its entries are added again (the restart lost them): the fleet's count is whole.
    assert redis_server.client().hget(f"postbud:{{{ACCOUNT}}}:totals", "recipients") == "10"
    assert all(redis_server.password not in r.getMessage() for r in caplog.records)


def test_a_hung_redis_costs_one_short_deadline(redis_server: RedisServer) -> None:
    m, sent = mailer(redis_server, daily_limit=20)
    with m:
        m.send("a@example.com", "s", "x")
        redis_server.pause()  # accepts connections, answers nothing
        try:
            durations = []
            for n in range(3):
                start = time.monotonic()
                m.send(f"b{n}@example.com", "s", "x")
                durations.append(time.monotonic() - start)
        finally:
            redis_server.resume()
    assert len(sent.messages) == 4
    assert durations[0] < 1.0  # one 0.5 s deadline, never the 30 s SMTP timeout
    assert max(durations[1:]) < 0.1  # then the breaker answers at once


def test_down_a_process_keeps_to_its_share_of_what_was_left(
    redis_server: RedisServer, stores: Callable[[postbud.Settings], RedisState]
) -> None:
    m, sent = mailer(redis_server, daily_limit=10, alert_reserve=0)
    peer = stores(settings(redis_server))  # a second live process (its heartbeat)
    peer.record(ACCOUNT, 2, False, time.time())
    with m:
        m.send("a@example.com", "s", "x")  # syncs: 3 of 10 used, 2 live: share 7 // 2 = 3
        redis_server.stop()
        for n in range(3):
            m.send(f"b{n}@example.com", "s", "x")
        with pytest.raises(postbud.QuotaExceededError) as info:
            m.send("c@example.com", "s", "x")
    assert info.value.retry_after is not None and info.value.retry_after < 10  # soon, not 24 h
    assert len(sent.messages) == 4


def test_the_password_never_shows(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    stores: Callable[[postbud.Settings], RedisState],
) -> None:
    url = redis_server.url.replace("redis://", f"redis://:{redis_server.password}@")
    s = postbud.Settings(username=ACCOUNT, app_password=PW, spool=None, state=url)
    assert s.state_password is not None and s.state_password.reveal() == redis_server.password
    assert redis_server.password not in repr(s) + str(s)
    wrong = stores(s.replace(state_password="nope", state=redis_server.url))
    with (
        caplog.at_level(logging.WARNING, logger="postbud"),
        pytest.raises(StateUnavailable) as info,
    ):
        wrong.set_gate(hold_gate(ACCOUNT), Gate(time.time() + 5, time.time(), 1, "x"))
    assert "POSTBUD_STATE_PASSWORD" in str(info.value)  # it says what to check
    right = stores(s)
    right.record(ACCOUNT, 1, False, time.time())
    redis_server.stop()
    with pytest.raises(StateUnavailable) as down:
        right.set_gate(hold_gate(ACCOUNT), Gate(time.time() + 5, time.time(), 1, "x"))
    shown = [str(info.value), str(down.value), *(r.getMessage() for r in caplog.records)]
    assert caplog.records and all(redis_server.password not in text for text in shown)
    assert info.value.__cause__ is None and down.value.__cause__ is None


# -- a fleet: processes standing in for hosts ------------------------------------------

CHILD = r"""
import json, logging, sys, time
import postbud
from postbud.testing import MemoryTransport
cfg = json.loads(sys.argv[1])
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("postbud").addHandler(Keep())
transport = MemoryTransport()
mailer = postbud.Mailer(transport=transport, **cfg["settings"])
while not __import__("os").path.exists(cfg["go"]):
    time.sleep(0.005)
accepted, waits, slowest, other = 0, 0, 0.0, []
for n in range(cfg["n"]):
    start = time.monotonic()
    try:
        mailer.send(f"{cfg['tag']}{n}@example.com", "s", "x")
        accepted += 1
    except postbud.QuotaExceededError:
        waits += 1
    except Exception as exc:
        other.append(repr(exc))
    slowest = max(slowest, time.monotonic() - start)
    time.sleep(cfg["pause"])
store = mailer.outbox.ledger.state
deadline = time.monotonic() + 15  # until what it counted alone is merged
while hasattr(store, "_views") and time.monotonic() < deadline:  # a Redis store
    mailer.outbox.ledger.used(time.time())
    if store._outage is None and not any(v.pending for v in store._views.values()):
        break
    time.sleep(0.1)
mailer.close()
print(json.dumps({"accepted": accepted, "sent": len(transport.messages), "waits": waits,
                  "slowest": slowest, "other": other, "logs": records}), flush=True)
"""


def run_fleet(
    server: RedisServer | None,
    tmp_path: Path,
    pause: float,
    during: Any = None,
    spool: str | None = None,
) -> list[dict[str, Any]]:
    """Four processes (hosts, with ``server``; else processes on one ``spool``) each
    sending to 40 recipients, one by one, with a daily limit of 50."""
    go = tmp_path / "go"
    values: dict[str, Any] = {
        "username": ACCOUNT,
        "app_password": PW,
        "spool": spool,
        "daily_limit": 50,
        "alert_reserve": 0,
    }
    if server is not None:
        values.update(state=server.url, state_password=server.password)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps(
                    {"settings": values, "go": str(go), "n": 40, "tag": f"h{k}-", "pause": pause}
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    time.sleep(0.5)  # all four imported postbud
    go.write_text("go")
    if during is not None:
        during()
    results = []
    for child in children:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def totals(server: RedisServer) -> int:
    return int(server.client().hget(f"postbud:{{{ACCOUNT}}}:totals", "recipients") or 0)


@pytest.mark.slow
def test_four_hosts_share_one_daily_limit(redis_server: RedisServer, tmp_path: Path) -> None:
    # Each send reserves its recipients on the server (check and count in one script),
    # so hosts that check at the same moment cannot both take the 50th (before the
    # reservation: 52 of 50 were seen).
    results = run_fleet(redis_server, tmp_path, pause=0.0)
    assert [r["other"] for r in results] == [[], [], [], []]
    assert sum(r["accepted"] for r in results) == 50  # exactly the limit, across hosts
    assert sum(r["sent"] for r in results) == 50
    assert sum(r["waits"] for r in results) == 4 * 40 - 50  # the rest wait
    assert totals(redis_server) == 50


@pytest.mark.slow
def test_four_processes_on_one_spool_share_one_daily_limit(tmp_path: Path) -> None:
    # The same race on one machine: the spool's reservation is one write transaction.
    spool = tmp_path / "shared.sqlite"
    results = run_fleet(None, tmp_path, pause=0.0, spool=str(spool))
    assert [r["other"] for r in results] == [[], [], [], []]
    assert sum(r["accepted"] for r in results) == 50
    assert sum(r["sent"] for r in results) == 50
    with postbud.Mailer(username=ACCOUNT, app_password=PW, spool=spool) as m:
        assert m.outbox.ledger.used(time.time())[0] == 50


@pytest.mark.slow
def test_redis_stopped_and_restarted_mid_run(redis_server: RedisServer, tmp_path: Path) -> None:
    def outage() -> None:
        deadline = time.monotonic() + 20
        while totals(redis_server) < 16:
            assert time.monotonic() < deadline, "the fleet did not start sending"
            time.sleep(0.01)
        redis_server.stop()  # no persistence: the restart loses every key
        time.sleep(1.0)
        redis_server.start()

    results = run_fleet(redis_server, tmp_path, pause=0.05, during=outage)
    assert [r["other"] for r in results] == [[], [], [], []]  # no exception reached a caller
    assert max(r["slowest"] for r in results) < 1.0  # no call waited long
    accepted = sum(r["accepted"] for r in results)
    assert 16 <= accepted <= 50  # never past the limit, blind or not
    assert totals(redis_server) == accepted  # the counts add up once Redis is back
    for r in results:
        assert all(redis_server.password not in line for line in r["logs"])
        assert len([line for line in r["logs"] if "cannot reach" in line]) <= 1
    assert any("cannot reach" in line for r in results for line in r["logs"])


# -- rediss:// ------------------------------------------------------------------------


def test_rediss_verifies_the_server_against_ca_file(redis_tls_server: RedisServer) -> None:
    assert redis_tls_server.url.startswith("rediss://")
    m, sent = mailer(redis_tls_server, ca_file=redis_tls_server.ca_file)
    with m:
        m.send("a@example.com", "over TLS", "x")
    assert len(sent.messages) == 1
    assert totals(redis_tls_server) == 1  # the count reached the server, over TLS


def test_rediss_refuses_a_certificate_it_cannot_verify(
    redis_tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    m, sent = mailer(redis_tls_server)  # no ca_file: the system's CAs do not know trustme's
    with (
        m,
        caplog.at_level(logging.WARNING, logger="postbud"),
        pytest.raises(postbud.QuotaExceededError) as info,
    ):
        m.send("a@example.com", "s", "x")  # never synced: no share to spend blind
    assert sent.messages == []
    assert info.value.retry_after is not None and info.value.retry_after < 10
    [warning] = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert "certificate verify failed" in warning
    assert redis_tls_server.password not in warning


# -- every entry point takes state -----------------------------------------------------


def test_alert_handler_and_alert_on_crash_take_state(
    redis_server: RedisServer, fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    values = fake_gmail.settings_values(
        spool=None, state=redis_server.url, state_password=redis_server.password
    )
    handler = postbud.AlertHandler(to="oncall@example.com", **values)
    try:
        assert isinstance(handler.mailer.outbox.ledger.state, RedisState)
    finally:
        handler.close()
    crash = (
        "import json, sys, postbud\n"
        "postbud.alert_on_crash(to='oncall@example.com', **json.loads(sys.argv[1]))\n"
        "raise RuntimeError('the nightly job broke')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", crash, json.dumps(values)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "the nightly job broke" in result.stderr
    assert ["RuntimeError" in str(m["Subject"]) for m in fake_gmail.messages] == [True]
    counted = redis_server.client().hget(f"postbud:{{{fake_gmail.username}}}:totals", "recipients")
    assert counted == "1"  # in the fleet's ledger on Redis


def test_a_quiet_day_is_not_mistaken_for_a_lost_ledger(
    redis_server: RedisServer,
    stores: Callable[[postbud.Settings], RedisState],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = stores(settings(redis_server, daily_limit=500))
    yesterday = time.time() - 26 * 3600
    store.record(ACCOUNT, 3, False, yesterday)  # the last send, 26 h ago
    client = redis_server.client()
    epoch = f"postbud:{{{ACCOUNT}}}:epoch"
    assert client.ttl(epoch) > 25 * 3600 * 10  # the epoch outlives the ledger's keys
    for name in ("ledger", "totals"):  # as a quiet day leaves them: expired
        client.delete(f"postbud:{{{ACCOUNT}}}:{name}")
    client.delete(epoch)  # even a month of quiet
    with caplog.at_level(logging.WARNING, logger="postbud"):
        got = store.reserve(ACCOUNT, 1, False, 450, time.time())
    assert got.granted and got.used == 0  # no 60 s of "500 of 500 used"
    assert not [r for r in caplog.records if "lost the quota ledger" in r.getMessage()]


def test_during_an_outage_the_alert_reserve_is_kept_once_for_the_fleet(
    redis_server: RedisServer, stores: Callable[[postbud.Settings], RedisState]
) -> None:
    m, sent = mailer(redis_server, daily_limit=100, alert_reserve=0.1)
    peers = [stores(settings(redis_server)) for _ in range(13)]  # 14 live processes
    for peer in peers:
        peer.used(ACCOUNT, time.time())  # their heartbeats
    with m:
        m.send("a@example.com", "s", "x")  # syncs: 99 left, 89 under the ordinary cap
        redis_server.stop()
        for n in range(6):  # 89 // 14 = 6 ordinary recipients: its share
            m.send(f"b{n}@example.com", "s", "x")
        with pytest.raises(postbud.QuotaExceededError):
            m.send("c@example.com", "s", "x")
    assert len(sent.messages) == 7


def test_a_host_whose_clock_runs_ahead_does_not_prune_the_others(
    redis_server: RedisServer, stores: Callable[[postbud.Settings], RedisState]
) -> None:
    fleet = [stores(settings(redis_server)) for _ in range(3)]
    for store in fleet:
        store.used(ACCOUNT, time.time())
    ahead = stores(settings(redis_server))
    ahead.used(ACCOUNT, time.time() + 120)  # two minutes ahead: past the heartbeats' 60 s
    assert redis_server.client().zcard(f"postbud:{{{ACCOUNT}}}:live") == 4


def test_started_during_an_outage_alerts_still_go_and_ordinary_mail_waits(
    redis_server: RedisServer, fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.stop()  # the process starts while Redis is away: it never synced
    values = fake_gmail.settings_values(
        spool=None, state=redis_server.url, state_password=redis_server.password
    )
    handler = postbud.AlertHandler(to="oncall@example.com", **values)
    log = logging.getLogger("test.outage.start")
    log.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="postbud"):
            log.error("the payment provider timed out")
            handler.flush()  # the tick, and the alert's delivery
            assert handler.mailer.flush(10)
            with pytest.raises(postbud.QuotaExceededError) as info:
                handler.mailer.send("customer@example.com", "Your receipt", "x")
    finally:
        log.removeHandler(handler)
        handler.close()
    # Alerts fail open, within the part of alert_reserve this process may use; ordinary
    # mail fails closed, and the message says why (a share, not "500 of 500 used").
    assert [str(m["Subject"]) for m in fake_gmail.messages] == [
        "[ERROR] test.outage.start: the payment provider timed out"
    ]
    assert "share of the daily limit" in str(info.value) and "unreachable" in str(info.value)
    assert not any("500 of 500" in r.getMessage() for r in caplog.records)
    assert not any("80 %" in r.getMessage() for r in caplog.records)
