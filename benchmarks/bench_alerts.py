"""What ``logger.error()``/``logger.exception()`` costs with AlertHandler, and a storm.

Latency (µs per call, p50 and p99, medians over interleaved rounds), the handler on its
own logger, against a fast FakeGmail and one that takes 50 ms per message:

- NullHandler: the cost of the logging call itself (the floor);
- AlertHandler, repeated record: the same error again (counted, deduplicated);
- AlertHandler, first occurrence: a new fingerprint on every call;
- stdlib SMTPHandler: a connection, STARTTLS and login per record, in ``emit``;
- QueueHandler + QueueListener(SMTPHandler): the usual non-blocking fix (it formats
  every record on the caller's thread).

Storm: 100,000 ``logger.exception`` calls from 4 threads over 50 fingerprints while
the handler's clock runs through 65 minutes: the callers' wall time, the peak of
memory allocated meanwhile (tracemalloc, a separate pass), the mails sent and the
sum of the counts they report, next to NullHandler and a bare QueueHandler.

The fake server runs in another process for the latency part (``_remote_fake.py``).
Run: ``.venv/bin/python benchmarks/bench_alerts.py [--n 300 --rounds 5]``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import logging.handlers
import queue
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _harness import (
    LatencyRows,
    latency_rounds,
    latency_table,
    queued_smtp_handler,
    stdlib_smtp_handler,
)
from _remote_fake import RemoteFake
from postbud import AlertHandler, Mailer
from postbud.testing import FakeGmail

TO = "oncall@example.com"
STORM_CALLS, STORM_THREADS, STORM_KINDS = 100_000, 4, 50
T0 = 1_800_000_000.0


def logger_with(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"bench.alerts.{name}")
    log.propagate = False
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    return log


def exception_call(log: logging.Logger) -> Callable[[int], None]:
    def call(i: int) -> None:
        try:
            raise ConnectionError("database is down")
        except ConnectionError:
            log.exception("query failed for user %s", i)

    return call


def latency(args: argparse.Namespace, fake: RemoteFake, fake587: RemoteFake, folder: Path) -> None:
    rows: LatencyRows = {}
    round_no = itertools.count()
    for speed, delay in (("fast server", 0.0), ("50 ms server", 0.05)):
        fake.command(f"delay DATA {delay}")
        fake587.command(f"delay DATA {delay}")
        mailer = Mailer(**fake.settings(spool=str(folder / f"{speed}.sqlite"), daily_limit=10**9))
        alert = AlertHandler(TO, mailer=mailer)
        smtp_handler = stdlib_smtp_handler(fake587.port, fake587.username, fake587.app_password, TO)
        queued_handler, listener, q = queued_smtp_handler(smtp_handler)
        repeated = exception_call(logger_with("repeated", alert))
        repeated(0)  # the first occurrence is not what this row measures
        alert.tick()

        first_log = logger_with("first", alert)

        def first(i: int) -> None:
            # A new fingerprint each call: a message template no round used before.
            try:
                raise ConnectionError("database is down")
            except ConnectionError:
                first_log.exception(f"kind {next(round_no)} failed")

        slow_n = max(5, args.n // 30)
        scenarios: dict[str, tuple[Callable[[int], object], int]] = {
            "NullHandler (logging itself)": (
                exception_call(logger_with("null", logging.NullHandler())),
                args.n,
            ),
            "AlertHandler, repeated record": (repeated, args.n),
            "AlertHandler, first occurrence": (first, args.n),
            "stdlib SMTPHandler": (exception_call(logger_with("smtp", smtp_handler)), slow_n),
            "QueueHandler + QueueListener": (
                exception_call(logger_with("queue", queued_handler)),
                args.n,
            ),
        }

        def settle(name: str) -> None:
            if name.startswith("AlertHandler"):
                alert.tick()
                mailer.flush(120)
            if name.startswith("QueueHandler"):
                q.join()  # every record sent, the last one included

        results = latency_rounds(scenarios, args.rounds, settle)
        listener.stop()
        alert.close()
        mailer.close()
        rows[speed] = results
    fake.command("delay DATA 0")
    fake587.command("delay DATA 0")

    print(
        f"\nCaller latency of logger.exception(), µs (median over {args.rounds} rounds of the "
        f"p50 and p99 of each round; n={args.n}, SMTPHandler n={max(5, args.n // 30)}).\n"
    )
    print(latency_table(rows, "handler", 1))


class StormClock:
    """Runs through 65 minutes over the storm's 100,000 calls."""

    def __init__(self) -> None:
        self.calls = itertools.count()
        self.done = 0

    def __call__(self) -> float:
        return T0 + self.done * (3900 / STORM_CALLS)


def storm_once(
    handler: logging.Handler, clock: StormClock | None, traced: bool
) -> tuple[float, int]:
    """Wall seconds of the callers, and the peak bytes allocated meanwhile."""
    log = logger_with("storm", handler)
    per_thread = STORM_CALLS // STORM_THREADS
    barrier = threading.Barrier(STORM_THREADS + 1)

    def caller(offset: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            if clock is not None:
                clock.done = next(clock.calls)
            try:
                raise KeyError(i)
            except KeyError:
                log.exception(TEMPLATES[(i + offset) % STORM_KINDS], i)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(STORM_THREADS)]
    for t in threads:
        t.start()
    if traced:
        tracemalloc.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    peak = 0
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return wall, peak


TEMPLATES = [f"job {k} failed on item %s" for k in range(STORM_KINDS)]


def storm(folder: Path) -> None:
    rows = []
    for traced in (False, True):
        null_wall, null_peak = storm_once(logging.NullHandler(), None, traced)
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        queue_wall, queue_peak = storm_once(logging.handlers.QueueHandler(q), None, traced)
        del q
        with FakeGmail("ssl") as fake:
            mailer = Mailer(fake.settings(spool=str(folder / f"storm-{traced}.sqlite")))
            clock = StormClock()
            handler = AlertHandler(TO, mailer=mailer, clock=clock)
            alert_wall, alert_peak = storm_once(handler, clock, traced)
            handler.close()
            mailer.close()
            mails = list(fake.messages)
        rows.append((null_wall, null_peak, queue_wall, queue_peak, alert_wall, alert_peak))
    kinds = [m["X-Postbud-Alert"] for m in mails]
    counted = sum(int(m["X-Postbud-Count"] or 0) for m in mails)
    print(
        f"\nStorm: {STORM_CALLS:,} logger.exception() calls from {STORM_THREADS} threads over "
        f"{STORM_KINDS} fingerprints, the handler's clock running through 65 minutes.\n"
    )
    print("| handler | callers' wall time | µs per call | peak memory growth |")
    print("|---|---:|---:|---:|")
    walls, peaks = rows[0], rows[1]
    for label, i in (
        ("NullHandler (logging itself)", 0),
        ("QueueHandler (nothing draining)", 2),
        ("AlertHandler", 4),
    ):
        print(
            f"| {label} | {walls[i]:.2f} s | {walls[i] * 1e6 / STORM_CALLS:.1f} | "
            f"{peaks[i + 1] / 1e6:.1f} MB |"
        )
    print(
        f"\nAlertHandler mails: {len(mails)} ({kinds.count('first')} first, "
        f"{kinds.count('follow-up')} follow-up, {kinds.count('digest')} digest); "
        f"sum of X-Postbud-Count = {counted:,} (records: {STORM_CALLS:,})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        storm(Path(folder))
        with RemoteFake("ssl") as fake, RemoteFake("starttls") as fake587:
            latency(args, fake, fake587, Path(folder))
    print(f"\nPython {sys.version.split()[0]}.")


if __name__ == "__main__":
    main()
