"""The shared state on Redis next to the spool's SQLite: what a send, an alert, a tick pay.

Issue 21 moves what an account's processes share (the quota ledger, the gates, the
alert state) to Redis when ``state="redis://…"`` is set. This benchmark starts its own
``redis-server`` on a free 127.0.0.1 port (no persistence, a password), and times, per
call, µs (p50 and p99, medians over interleaved rounds), each store next to the other
in the same rounds:

1. Ledger: one ``Ledger.reserve(1, False, now)`` then ``settle(reservation, 1, now)``
   (what every message the worker sends pays; with ``hold=True``, the default, it
   reads the 550 hold's gate first, then counts: two calls to the store), on the
   spool's SQLite, on Redis, and in memory (``spool=None``, the floor); next to one
   redis-py ``PING``, a bare round trip.
2. ``Mailer.send()`` (blocking) with ``postbud.testing.MemoryTransport``: no SMTP,
   so what is left is building the message and the state's reads and writes (the
   login pause's gate, then ``reserve(hold=False)``; ``settle`` of a send that all
   recipients got writes nothing).
3. ``logger.error()`` with an ``AlertHandler`` whose Mailer uses either store, a
   repeated record and a first occurrence (the handler's thread then ticks during the
   burst), next to a logger with a ``NullHandler`` (logging itself). ``emit`` touches
   only memory: the goal is the same p99 on both stores.
4. ``AlertHandler.tick()``, the handler's periodic flush of the counts ``emit``
   gathered into the alert state: 5 repeated records logged (untimed), then one tick
   timed; without a mail due (a cooldown runs), and with ``force=True`` (``flush()``'s
   tick: the pending counts go out as a follow-up mail, queued with the state). The
   lines after the tables say which alert store each handler's ticks used (on Redis:
   ``alerts/_redis_store.py``'s WATCH/MULTI transaction once it is wired, the spool's
   SQLite before). Every tick also reads the ledger (``alerts_over_share``): on Redis,
   one more round trip.

Every Mailer but the memory one has a spool (its queue stays there on Redis too): the
only difference between the two stores' Mailers is ``state``. Each store's bursts run
back to back and, every other pass, in reverse order, so both meet the machine's noise
alike; after each burst the mails it queued are delivered, untimed. A round is
``--bursts`` bursts per scenario and its p99 is that of all their calls together (see
bench_outbox.py for why one burst's p99 is too unsteady).

Without ``redis-server`` (``apt-get install redis-server``) or redis-py
(``pip install 'postbud[redis]'``) it prints why and measures nothing.

Run: ``.venv/bin/python benchmarks/bench_state.py [--quick] [--n 300 --ticks 100
--rounds 15 --bursts 3]``. ``--quick`` (5 rounds of 1 burst, n=200, 60 ticks) takes
under a minute on the shared 2-core machine, the full profile about 3 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import latency_rounds, percentiles
from postbud import AlertHandler, Mailer, Settings
from postbud.testing import MemoryTransport

USER = "bench@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"
TO = "you@example.com"
ONCALL = "oncall@example.com"
BODY = "Hello,\n\nthis is a benchmark message. " + "Some text. " * 40 + "\n"
#: Repeated records logged (untimed) before each timed tick.
PER_TICK = 5

SQLITE, REDIS, MEMORY = "SQLite (the spool)", "Redis", "memory (spool=None)"
Rounds = dict[str, list[tuple[float, float]]]
Call = Callable[[int], object]


# -- the Redis server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(binary: str, folder: Path) -> Iterator[tuple[str, str, Any]]:
    """A ``redis-server`` on a free 127.0.0.1 port, without persistence, as the tests
    start it (tests/core/redistools.py); yields (url, password, a redis-py client),
    and stops it afterwards."""
    import redis

    port, password = free_port(), secrets.token_hex(16)
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(folder), "--requirepass", password),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"bench_state.py: redis-server did not start on port {port}."
                    ) from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", password, client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def missing() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'postbud[redis]')"
    return None


# -- measuring ------------------------------------------------------------------------------


class Stores:
    """Mailers (MemoryTransport) and their AlertHandlers, made on demand; ``close``
    closes them all, the handlers first (also when the run stops half-way: no
    handler may flush at exit into a spool whose folder is gone)."""

    def __init__(self, folder: Path, url: str, password: str) -> None:
        self.folder, self.url, self.password = folder, url, password
        self.made: list[tuple[Mailer, MemoryTransport]] = []
        self.handlers: list[AlertHandler] = []
        self.count = itertools.count()

    def mailer(self, store: str, **settings: Any) -> tuple[Mailer, MemoryTransport]:
        values: dict[str, Any] = {
            "username": USER,
            "app_password": APP_PASSWORD,
            "spool": None if store == MEMORY else str(self.folder / f"{next(self.count)}.sqlite"),
            "daily_limit": 10**9,
            **settings,
        }
        if store == REDIS:
            values.update(state=self.url, state_password=self.password)
        transport = MemoryTransport()
        mailer = Mailer(Settings(**values), transport=transport)
        kind = type(mailer.outbox.ledger.state).__name__
        expected = {SQLITE: "SQLiteState", REDIS: "RedisState", MEMORY: "MemoryState"}[store]
        if kind != expected:
            raise SystemExit(f"bench_state.py: the {store} Mailer's ledger is on {kind}.")
        self.made.append((mailer, transport))
        return mailer, transport

    def handler(self, mailer: Mailer) -> AlertHandler:
        self.handlers.append(AlertHandler(ONCALL, mailer=mailer))
        return self.handlers[-1]

    def close(self) -> None:
        for handler in self.handlers:
            handler.close()
        for mailer, _ in self.made:
            mailer.close()


def prepared_rounds(
    scenarios: dict[str, tuple[Call, Call, int]],
    rounds: int,
    bursts: int,
    settle: Callable[[str], None],
) -> Rounds:
    """``latency_rounds`` (same rounds, passes, order and warm-up) for calls that each
    need an untimed step first: (prepare(i), call(i), n); only ``call(i)`` is timed."""
    results: Rounds = {name: [] for name in scenarios}
    for round_no in range(rounds):
        samples: dict[str, list[float]] = {name: [] for name in scenarios}
        for pass_no in range(bursts):
            names = list(scenarios)
            if (round_no * bursts + pass_no) % 2:
                names.reverse()
            for name in names:
                prepare, call, n = scenarios[name]
                for i in range(n, n + max(1, n // 30)):  # warm-up, untimed
                    prepare(i)
                    call(i)
                for i in range(n):
                    prepare(i)
                    start = time.perf_counter_ns()
                    call(i)
                    samples[name].append((time.perf_counter_ns() - start) / 1000)
                settle(name)
        for name, values in samples.items():
            results[name].append(percentiles(values))
    return results


def medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    p50s, p99s = zip(*values)
    return statistics.median(p50s), statistics.median(p99s)


def ratio_table(
    column: str,
    results: Rounds,
    baseline: dict[str, str],
    *,
    floor: str | None = None,
    unit: str = "µs",
    scale: float = 1.0,
    digits: int = 0,
) -> str:
    """Markdown: per row the median p50 and p99, then p50 and p99 × its ``baseline``
    row (the SQLite one; "–" for a row that has none) and, with ``floor``, the p99 ×
    that row."""
    head = [column, f"p50, {unit}", f"p99, {unit}"]
    if floor is not None:
        head.append("p99 × no handler")
    head += ["p50 × SQLite", "p99 × SQLite"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, values in results.items():
        p50, p99 = medians(values)
        cells = [f"{p50 / scale:,.{digits}f}", f"{p99 / scale:,.{digits}f}"]
        if floor is not None:
            cells.append(f"{p99 / medians(results[floor])[1]:.2f}×")
        if name in baseline:
            b50, b99 = medians(results[baseline[name]])
            cells += [f"{p50 / b50:.2f}×", f"{p99 / b99:.2f}×"]
        else:
            cells += ["–", "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(args: argparse.Namespace, what: str, n: int) -> str:
    return (
        f"\n{what}, µs (median over {args.rounds} rounds of the p50 and p99 of each round's "
        f"{args.bursts} burst(s) of n={n} calls).\n"
    )


# -- 1. the ledger --------------------------------------------------------------------------


def ledger(args: argparse.Namespace, stores: Stores, client: Any) -> None:
    def reserve_settle(mailer: Mailer) -> Call:
        book = mailer.outbox.ledger

        def call(i: int) -> None:
            reservation = book.reserve(1, False, time.time())
            book.settle(reservation, 1, time.time())

        return call

    scenarios: dict[str, tuple[Call, int]] = {
        store: (reserve_settle(stores.mailer(store)[0]), args.n) for store in (SQLITE, REDIS)
    }
    scenarios[MEMORY] = (reserve_settle(stores.mailer(MEMORY)[0]), args.n)
    scenarios["redis-py PING (one round trip)"] = (lambda i: client.ping(), args.n)
    results = latency_rounds(
        scenarios, args.rounds, lambda name: None, bursts=args.bursts, alternate=True
    )
    print(header(args, "Ledger.reserve(1) + settle(1) per call", args.n))
    print(ratio_table("store", results, dict.fromkeys(results, SQLITE), digits=1))


# -- 2. a blocking send ---------------------------------------------------------------------


def send_call(mailer: Mailer) -> Call:
    return lambda i: mailer.send(TO, f"Message {i}", BODY)


def sends(args: argparse.Namespace, stores: Stores) -> None:
    transports: dict[str, MemoryTransport] = {}
    scenarios: dict[str, tuple[Call, int]] = {}
    for store in (SQLITE, REDIS, MEMORY):
        mailer, transports[store] = stores.mailer(store)
        scenarios[store] = (send_call(mailer), args.n)

    def settle(name: str) -> None:
        transports[name].messages.clear()

    results = latency_rounds(scenarios, args.rounds, settle, bursts=args.bursts, alternate=True)
    print(header(args, "Mailer.send() with MemoryTransport (no SMTP) per call", args.n))
    print(ratio_table("store", results, dict.fromkeys(results, SQLITE), digits=0))


# -- 3. logger.error with an AlertHandler ---------------------------------------------------


def logger_with(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"bench.state.{name}")
    log.propagate = False
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    return log


def store_of(handler: AlertHandler) -> str:
    """The class of the alert store the handler's ticks used (after its first tick)."""
    store = getattr(getattr(handler, "_ticker", None), "store", None)
    return "none yet" if store is None else f"{type(store).__module__}.{type(store).__name__}"


def emits(args: argparse.Namespace, stores: Stores) -> dict[str, str]:
    kinds = itertools.count()

    def repeated(log: logging.Logger) -> Call:  # one call site: one fingerprint
        return lambda i: log.error("query failed for user %s", i)

    def first(log: logging.Logger) -> Call:  # a new fingerprint each call
        return lambda i: log.error(f"kind {next(kinds)} failed")

    handlers: dict[str, tuple[AlertHandler, Mailer, MemoryTransport]] = {}
    loggers: dict[tuple[str, str], logging.Logger] = {}
    for store in (SQLITE, REDIS):
        mailer, transport = stores.mailer(store)
        alert = stores.handler(mailer)
        handlers[store] = (alert, mailer, transport)
        loggers[store, "repeated record"] = logger_with(f"repeated.{store}", alert)
        loggers[store, "first occurrence"] = logger_with(f"first.{store}", alert)
        repeated(loggers[store, "repeated record"])(0)  # its first alert is not measured
        alert.tick()
        mailer.flush(60)

    floor = "no handler (NullHandler: logging itself)"
    scenarios: dict[str, tuple[Call, int]] = {
        floor: (repeated(logger_with("null", logging.NullHandler())), args.n)
    }
    rows: dict[str, str] = {}  # scenario -> its store
    for kind, make in (("repeated record", repeated), ("first occurrence", first)):
        for store in (SQLITE, REDIS):
            name = f"AlertHandler, {store}, {kind}"
            rows[name] = store
            scenarios[name] = (make(loggers[store, kind]), args.n)

    def settle(name: str) -> None:
        if name in rows:  # what the burst counted is merged and mailed, untimed
            alert, mailer, transport = handlers[rows[name]]
            alert.tick()
            mailer.flush(120)
            transport.messages.clear()

    results = latency_rounds(scenarios, args.rounds, settle, bursts=args.bursts, alternate=True)
    baseline = {name: name.replace(REDIS, SQLITE) for name in rows}
    print(header(args, "Caller latency of logger.error()", args.n))
    print(ratio_table("handler", results, baseline, floor=floor, digits=1))
    used = {store: store_of(alert) for store, (alert, _, _) in handlers.items()}
    for alert, _, _ in handlers.values():
        alert.close()
    return used


# -- 4. the alert tick ----------------------------------------------------------------------


def delivered(transport: MemoryTransport, count: int) -> None:
    """Wait until ``transport`` holds ``count`` mails (polling: ``flush()`` looks every
    20 ms, which made most of this benchmark's time)."""
    deadline = time.monotonic() + 60
    while len(transport.messages) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_state.py: {count} alert mails not delivered in 60 s.")
        time.sleep(0.0002)


class TickRig:
    """One store's handler for the tick rows. Every forced tick queues exactly one
    mail (checked at the end), so after ``forced`` of them ``1 + forced`` are delivered."""

    def __init__(self, stores: Stores, store: str) -> None:
        # No cap and a long cooldown: a tick without force mails nothing, a forced one
        # mails exactly the follow-up of the pending counts.
        self.mailer, self.transport = stores.mailer(store, alert_cap=10**9, alert_cooldown=3600)
        self.alert = stores.handler(self.mailer)
        self.log = logger_with(f"tick.{store}", self.alert)
        self.forced = 0
        self.records(0)  # the first alert, mailed now: not what the rows measure
        self.alert.tick()
        delivered(self.transport, 1)
        self.before = self.alert.stats()

    def records(self, i: int) -> None:
        """``PER_TICK`` repeated records (one call site: one fingerprint)."""
        for k in range(PER_TICK):
            self.log.error("job failed on item %s", i * PER_TICK + k)

    def idle_records(self, i: int) -> None:
        """The same, once the last forced tick's mail is delivered (an idle worker)."""
        self.idle()
        self.records(i)

    def idle(self) -> None:
        delivered(self.transport, 1 + self.forced)

    def tick(self, i: int) -> None:
        self.alert.tick()

    def forced_tick(self, i: int) -> None:
        self.alert.tick(force=True)
        self.forced += 1


def ticks(args: argparse.Namespace, stores: Stores) -> dict[str, str]:
    rigs = {store: TickRig(stores, store) for store in (SQLITE, REDIS)}
    scenarios: dict[str, tuple[Call, Call, int]] = {}
    for force in (False, True):  # each kind's two stores back to back
        for store, rig in rigs.items():
            if force:
                name = f"tick(force=True), one mail queued, {store}"
                scenarios[name] = (rig.idle_records, rig.forced_tick, args.ticks)
            else:
                scenarios[f"tick(), no mail due, {store}"] = (rig.records, rig.tick, args.ticks)

    def settle(name: str) -> None:
        rigs[REDIS if REDIS in name else SQLITE].idle()

    results = prepared_rounds(scenarios, args.rounds, args.bursts, settle)
    print(
        f"\nAlertHandler.tick() after {PER_TICK} repeated records (untimed), ms (median "
        f"over {args.rounds} rounds of the p50 and p99 of each round's {args.bursts} "
        f"burst(s) of n={args.ticks} ticks).\n"
    )
    baseline = {name: name.replace(REDIS, SQLITE) for name in results}
    print(ratio_table("tick", results, baseline, unit="ms", scale=1000, digits=2))
    used = {}
    for store, rig in rigs.items():
        rig.idle()
        mails = {k: v - rig.before[k] for k, v in rig.alert.stats().items() if k != "records"}
        used[store] = (
            f"{store_of(rig.alert)} ({rig.forced} forced ticks, warm-ups included, "
            f"queued {mails['follow-up']} follow-up, {mails['first']} first and "
            f"{mails['digest']} digest mails)"
        )
        rig.alert.close()
    return used


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    parser.add_argument("--n", type=int, default=300, help="calls per latency burst")
    parser.add_argument("--ticks", type=int, default=100, help="ticks per tick burst")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--bursts", type=int, default=3, help="bursts per round")
    if parser.parse_args().quick:  # smaller defaults; options given still win
        parser.set_defaults(n=200, ticks=60, rounds=5, bursts=1)
    args = parser.parse_args()
    why = missing()
    if why is not None:
        print(f"\nSkipped: {why}; this benchmark needs a real Redis server and measured nothing.")
        return
    binary = shutil.which("redis-server")
    assert binary is not None
    # Killed (run.py's parent, a CI timeout): stop the server on the way out too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    version = subprocess.run(
        [binary, "--version"], check=False, capture_output=True, text=True
    ).stdout
    with (
        tempfile.TemporaryDirectory() as folder,
        redis_server(binary, Path(folder)) as (url, password, client),
    ):
        stores = Stores(Path(folder), url, password)
        try:
            ledger(args, stores, client)
            sends(args, stores)
            emitted = emits(args, stores)
            ticked = ticks(args, stores)
        finally:
            stores.close()
    print("\nAlert store each handler's ticks used:\n")
    for store in (SQLITE, REDIS):
        print(f"- {store}: emit rows {emitted[store]}; tick rows {ticked[store]}.")
    print(
        f"\n{version.split(' sha=')[0].strip()} on 127.0.0.1 (no persistence), "
        f"Python {sys.version.split()[0]}."
    )


if __name__ == "__main__":
    main()
