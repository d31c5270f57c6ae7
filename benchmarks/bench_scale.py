"""Scale: what postbud's costs do as the ledger, the spool and the alert state grow.

The rows of issue 16, each next to a baseline measured in the same run (medians of
interleaved rounds; the machine is shared and noisy):

1. ``Ledger.check()`` with 0 / 2,000 / 100,000 entries in the 24 h window, vs 0.
2. ``Mailer.stats()`` with 0 / 10,000 / 100,000 queued rows, vs 0.
3. Drain of a backlog of N queued rows by one Mailer's worker: the rate of the first
   and of the last 10 %, and the overall rate vs raw smtplib on one connection.
4. The same drain while the caller waits in ``flush()`` vs while it only polls
   ``stats()``.
5. ``AlertHandler``: caller latency of ``logger.error()`` (p50/p99/p99.9/max), peak
   RSS growth and ``close()`` time with 10 / 1,000 / 100,000 distinct fingerprints over
   the same number of calls, one fresh process per run, vs NullHandler and vs 10.
6. ``build_message`` to 100 never-seen addresses vs the stdlib's ``EmailMessage``.
7. ``import postbud`` vs ``import smtplib, ssl, logging`` in fresh interpreters.
8. An outage: the server closes every connection before its greeting for 60 s with
   10,000 rows queued: connection attempts, CPU, and the wait for the first delivery
   once it is back, vs what the default retry policy's backoff schedule allows.

The servers run in other processes (``_remote_fake.py``, and this file's ``--serve``
for the outage, which needs fault injection): they must not compete with the client
for the GIL. Rows are queued by SQL (``executemany`` of the spool's own INSERT), and
progress is read by polling ``Mailer.stats()["sent"]`` every 10 ms.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick] [--only ledger,stats,...]``.
``--quick`` makes every size 10x smaller (the outage 10 s, 1,000 rows): about 5 minutes
on the shared 2-core machine. The full profile takes about 35 minutes, 27 of them row 3
(a round at 100,000 is ~9 minutes: postbud and the floor each ~4); ``--only`` picks rows
and ``--drain-rounds 1`` shortens row 3.
"""

from __future__ import annotations

import argparse
import array
import functools
import gc
import itertools
import json
import logging
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import postbud
from _harness import smtplib_floor
from _remote_fake import RemoteFake
from postbud import Mailer, Settings
from postbud._message import build_message
from postbud._outbox import DEFAULT_POLICY, Outbox, Priority
from postbud._outbox.db import Database
from postbud._outbox.ledger import Ledger
from postbud._outbox.spool import _INSERT
from postbud._outbox.state import WINDOW, SQLiteState
from postbud.testing import MemoryTransport

HERE = Path(__file__).resolve()
TO = "you@example.com"
BODY = "Hello,\n\nthis is a benchmark message. " + "Some text. " * 40 + "\n"
ACCOUNT = {"username": "bench.scale@gmail.com", "app_password": "abcd efgh ijkl mnop"}
#: How often progress is read while a backlog drains.
POLL = 0.01
ROWS = ("ledger", "stats", "drain", "flush", "alerts", "build", "import", "outage")


@dataclass(frozen=True)
class Profile:
    ledger: tuple[int, ...]
    stats: tuple[int, ...]
    drain: tuple[int, ...]
    flush: int
    fingerprints: tuple[int, ...]
    alert_calls: int
    build_n: int
    outage_s: float
    outage_rows: int


FULL = Profile(
    ledger=(0, 2_000, 100_000),
    stats=(0, 10_000, 100_000),
    drain=(10_000, 100_000),
    flush=10_000,
    fingerprints=(10, 1_000, 100_000),
    alert_calls=100_000,
    build_n=200,
    outage_s=60.0,
    outage_rows=10_000,
)
QUICK = Profile(
    ledger=(0, 200, 10_000),
    stats=(0, 1_000, 10_000),
    drain=(1_000, 10_000),
    flush=2_000,
    fingerprints=(10, 1_000, 10_000),
    alert_calls=10_000,
    build_n=50,
    outage_s=10.0,
    outage_rows=1_000,
)


# -- small helpers -----------------------------------------------------------------------


def md(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: figures right-aligned, the first and the target column not."""
    align = ["---" if i == 0 or h.startswith("target") else "---:" for i, h in enumerate(header)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def spread(values: list[float], digits: int = 1) -> str:
    return f"{min(values):,.{digits}f}–{max(values):,.{digits}f}"


def per_call_us(call: Callable[[], object], n: int) -> float:
    """Mean µs per call over ``n`` calls in a row."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def quantile(ordered: list[float] | array.array[float], q: float) -> float:
    """Nearest rank of sorted ``ordered`` (q=1: the max)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rss_bytes() -> int:
    """The resident set now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settings_for(spool: Path | None, **values: Any) -> Settings:
    return Settings(**{**ACCOUNT, "spool": None if spool is None else str(spool), **values})


def fill_spool(path: Path, settings: Settings, n: int, *, distinct: bool) -> None:
    """Queue ``n`` rows for ``settings``' account, by SQL (the spool's own INSERT),
    from an outbox opened only to read (no worker). ``distinct``: a message each."""
    outbox = Outbox.open(settings.replace(spool=str(path)))
    spool = outbox.spool
    assert spool is not None
    now = time.time()
    same = build_message(mail_from=settings.username, to=TO, subject="Message", text=BODY)
    chunk = 5_000
    for start in range(0, n, chunk):
        values = []
        for i in range(start, min(n, start + chunk)):
            envelope = (
                build_message(mail_from=settings.username, to=TO, subject=f"Message {i}", text=BODY)
                if distinct
                else same
            )
            values.append(spool._values(envelope, Priority.NORMAL, now, now))
        with spool.database.transaction(wait=10.0) as db:
            db.executemany(_INSERT, values)
    assert spool.pending() == n
    outbox.release()  # the last connection closes: the WAL is folded in, the file whole


def crossing(samples: list[tuple[float, int]], target: float) -> float:
    """When the count reached ``target``, interpolated between two polls."""
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if c1 >= target:
            return t0 + (t1 - t0) * ((target - c0) / (c1 - c0)) if c1 > c0 else t1
    raise ValueError(f"never reached {target}")


def wait_sent(
    mailer: Mailer, n: int, start: float, timeout: float, poll: float = POLL
) -> list[tuple[float, int]]:
    """Poll ``stats()["sent"]`` until ``n``; (seconds since ``start``, sent) samples."""
    samples = [(0.0, 0)]
    deadline = start + timeout
    while True:
        time.sleep(poll)
        now = time.perf_counter()
        sent = mailer.stats()["sent"]
        samples.append((now - start, sent))
        if sent >= n:
            return samples
        if now > deadline:
            raise TimeoutError(f"{sent} of {n} sent after {timeout:.0f} s")


# -- 1. the ledger -----------------------------------------------------------------------


def check_now(ledger: Ledger) -> None:
    ledger.check(1, False, time.time())


def bench_ledger(profile: Profile, rounds: int, folder: Path) -> None:
    settings = settings_for(None, daily_limit=10**7)
    account = settings.username.lower()
    ledgers: dict[int, Ledger] = {}
    now = time.time()
    for size in profile.ledger:
        database = Database(str(folder / f"ledger-{size}.sqlite"))
        # Spread over the window, an hour from either end: none leaves it during the run.
        span = WINDOW - 7200
        entries = [(account, now - WINDOW + 3600 + span * i / size, 1, 0) for i in range(size)]
        with database.transaction(wait=10.0) as db:
            db.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?)", entries)
        ledger = Ledger(settings, SQLiteState(database))
        assert ledger.used(time.time())[0] == size
        ledgers[size] = ledger
    calls = 2_000
    results: dict[int, list[float]] = {size: [] for size in ledgers}
    for round_no in range(rounds + 1):
        for size, ledger in ledgers.items():
            us = per_call_us(functools.partial(check_now, ledger), calls)
            if round_no:  # the first round warms up
                results[size].append(us)
    rows = scaling_rows(results, "entries", "≤ 1.5×", lambda ratio, _: ratio <= 1.5)
    print(
        f"\n### 1. Ledger.check() (SQLiteState on a temp file), µs per check\n\n"
        f"{calls:,} checks per round, median of {rounds} rounds (+1 warm-up), interleaved.\n"
    )
    print(md(["entries in the 24 h window", "µs/check", "min–max", "× 0 entries", "target"], rows))


def scaling_rows(
    results: dict[int, list[float]],
    unit: str,
    target: str,
    met: Callable[[float, float], bool],
) -> list[list[str]]:
    """Table rows of µs per call at each size, as a ratio to the first (smallest) size;
    the target's verdict on the last (largest). ``met(ratio, median_us)``."""
    sizes = list(results)
    base = statistics.median(results[sizes[0]])
    rows = []
    for size, values in results.items():
        med = statistics.median(values)
        ratio = med / base
        verdict_text = f"{target}: {verdict(met(ratio, med))}" if size == sizes[-1] else ""
        rows.append(
            [f"{size:,} {unit}", f"{med:.1f}", spread(values), f"{ratio:.2f}×", verdict_text]
        )
    return rows


# -- 2. Mailer.stats() -------------------------------------------------------------------


def bench_stats(profile: Profile, rounds: int, folder: Path) -> None:
    mailers: dict[int, Mailer] = {}
    for size in profile.stats:
        path = folder / f"stats-{size}.sqlite"
        settings = settings_for(path, daily_limit=10**7)
        # Made while the spool is empty: no worker starts (it would deliver the rows).
        mailer = Mailer(settings, transport=MemoryTransport())
        fill_spool(path, settings, size, distinct=False)
        assert mailer.stats()["queued"] == size
        mailers[size] = mailer
    calls = 2_000
    results: dict[int, list[float]] = {size: [] for size in mailers}
    for round_no in range(rounds + 1):
        for size, mailer in mailers.items():
            us = per_call_us(mailer.stats, calls)
            if round_no:
                results[size].append(us)
    for size, mailer in mailers.items():
        assert mailer.stats()["queued"] == size  # nothing was delivered meanwhile
        mailer.close(0)
    rows = scaling_rows(
        results, "queued", "≤ 1.5× or ≤ 1 ms", lambda ratio, med: ratio <= 1.5 or med <= 1000
    )
    print(
        f"\n### 2. Mailer.stats(), µs per call\n\n{calls:,} calls per round, median of "
        f"{rounds} rounds (+1 warm-up), interleaved; no worker running.\n"
    )
    print(md(["queued rows in the spool", "µs/call", "min–max", "× 0 rows", "target"], rows))


# -- 3. draining a backlog ---------------------------------------------------------------


def drain_once(fake: RemoteFake, template: Path, path: Path, n: int) -> list[tuple[float, int]]:
    """A Mailer on a copy of ``template`` (n rows) drains it; the progress samples."""
    shutil.copyfile(template, path)
    start = time.perf_counter()
    mailer = Mailer(**fake.settings(spool=str(path), daily_limit=10**7))  # its worker starts
    samples = wait_sent(mailer, n, start, timeout=60 + n / 50)
    mailer.close(10)
    delivered = int(fake.command("count"))
    assert delivered == n, f"the server got {delivered} of {n}"
    fake.command("reset")
    path.unlink()
    return samples


def floor_once(fake: RemoteFake, context: ssl.SSLContext, n: int) -> float:
    start = time.perf_counter()
    smtplib_floor(fake.port, context, fake.username, fake.app_password, n, BODY)
    rate = n / (time.perf_counter() - start)
    fake.command("reset")
    return rate


def bench_drain(profile: Profile, rounds: int, fake: RemoteFake, folder: Path) -> None:
    context = ssl.create_default_context(cafile=fake.ca_file)
    settings = Settings(**fake.settings(spool=None))
    warm = folder / "warm.template.sqlite"  # warm-up: both sides' first connections
    fill_spool(warm, settings, 200, distinct=True)
    drain_once(fake, warm, folder / "warm.sqlite", 200)
    floor_once(fake, context, 200)
    rows = []
    for n in profile.drain:
        template = folder / f"drain-{n}.template.sqlite"
        fill_spool(template, settings, n, distinct=True)
        firsts, lasts, overall, floors = [], [], [], []
        for round_no in range(rounds):
            # Alternate which goes first, so neither always meets the other's aftermath.
            order = ("floor", "postbud") if round_no % 2 else ("postbud", "floor")
            for which in order:
                if which == "floor":
                    floors.append(floor_once(fake, context, n))
                    continue
                samples = drain_once(fake, template, folder / "drain.sqlite", n)
                tenth = n / 10
                firsts.append(tenth / crossing(samples, tenth))
                lasts.append(tenth / (crossing(samples, n) - crossing(samples, n - tenth)))
                overall.append(n / crossing(samples, n))
        template.unlink()
        rows.append((n, firsts, lasts, overall, floors))
    table = []
    for n, firsts, lasts, overall, floors in rows:
        first, last = statistics.median(firsts), statistics.median(lasts)
        total, floor = statistics.median(overall), statistics.median(floors)
        table.append(
            [
                f"{n:,}",
                f"{first:,.0f}",
                f"{last:,.0f}",
                f"{last / first:.2f} ({verdict(last / first >= 0.8)})",
                f"{total:,.0f}",
                f"{floor:,.0f}",
                f"{total / floor:.2f}× ({verdict(total / floor >= 0.8)})",
            ]
        )
    print(
        f"\n### 3. Drain of a queued backlog by one Mailer's worker, msg/s\n\n"
        f"Median of {rounds} rounds; each round a fresh copy of the same spool, and the "
        "smtplib floor (one connection, EmailMessage + send_message in a loop) on the "
        "same server, alternately first. First 10 % counted from the Mailer's creation "
        "(connect and login included).\n"
    )
    print(
        md(
            [
                "N queued",
                "first 10 %",
                "last 10 %",
                "last/first [≥ 0.8]",
                "postbud overall",
                "smtplib floor",
                "postbud/floor [≥ 0.8×]",
            ],
            table,
        )
    )


# -- 4. flush() while draining -----------------------------------------------------------


def bench_flush(profile: Profile, rounds: int, fake: RemoteFake, folder: Path) -> None:
    n = profile.flush
    settings = Settings(**fake.settings(spool=None))
    template = folder / f"flush-{n}.template.sqlite"
    fill_spool(template, settings, n, distinct=True)
    path = folder / "flush.sqlite"

    def flushed() -> float:
        shutil.copyfile(template, path)
        start = time.perf_counter()
        mailer = Mailer(**fake.settings(spool=str(path), daily_limit=10**7))
        assert mailer.flush(60 + n / 50)
        elapsed = time.perf_counter() - start
        assert mailer.stats()["sent"] == n
        mailer.close(10)
        return n / elapsed

    def unwaited() -> float:
        shutil.copyfile(template, path)
        start = time.perf_counter()
        mailer = Mailer(**fake.settings(spool=str(path), daily_limit=10**7))
        samples = wait_sent(mailer, n, start, timeout=60 + n / 50)
        mailer.close(10)
        return n / crossing(samples, n)

    scenarios = {"caller in flush(timeout)": flushed, "caller polls stats() (unwaited)": unwaited}
    rates: dict[str, list[float]] = {name: [] for name in scenarios}
    for round_no in range(rounds + 1):
        names = list(scenarios) if round_no % 2 else list(reversed(scenarios))
        for name in names:
            rate = scenarios[name]()
            assert int(fake.command("count")) == n
            fake.command("reset")
            path.unlink()
            if round_no:
                rates[name].append(rate)
    template.unlink()
    base = statistics.median(rates["caller polls stats() (unwaited)"])
    table = []
    for name, values in rates.items():
        med = statistics.median(values)
        target = f"≥ 0.95×: {verdict(med / base >= 0.95)}" if "flush" in name else ""
        table.append([name, f"{med:,.0f}", spread(values, 0), f"{med / base:.2f}×", target])
    print(
        f"\n### 4. Draining {n:,} queued rows while the caller waits in flush(), msg/s\n\n"
        f"Median of {rounds} rounds (+1 warm-up), alternating order; timed from the "
        "Mailer's creation to the last delivery.\n"
    )
    print(md(["caller", "msg/s", "min–max", "× unwaited", "target"], table))


# -- 5. the alert handler ----------------------------------------------------------------


def alert_child(kinds: int, calls: int, spool: str) -> None:
    """One run in a fresh process: ``calls`` logger.error() calls over ``kinds``
    distinct templates (0: a NullHandler instead). Prints one JSON line."""
    logging.getLogger("postbud").setLevel(logging.ERROR)
    log = logging.getLogger("bench.scale.alerts")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler: logging.Handler
    transport = MemoryTransport()
    mailer = None
    if kinds:
        settings = settings_for(None if spool == "none" else Path(spool), daily_limit=10**7)
        mailer = Mailer(settings, transport=transport)
        handler = postbud.AlertHandler("oncall@example.com", mailer=mailer)
    else:
        handler = logging.NullHandler()
    log.handlers[:] = [handler]
    # A distinct template is a distinct fingerprint (record.msg, before % arguments).
    templates = [f"boom {k}" for k in range(max(1, kinds))]
    samples = array.array("d", bytes(8 * calls))
    warm = logging.getLogger("bench.scale.warm")
    warm.propagate = False
    warm.handlers[:] = [logging.NullHandler()]
    for _ in range(1000):  # logging's own code paths, warm
        warm.error("warm-up")
    ns = time.perf_counter_ns
    error = log.error
    width = len(templates)
    gc.collect()
    rss_before, peak_before = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = time.perf_counter()
    for i in range(calls):
        start = ns()
        error(templates[i % width])
        samples[i] = (ns() - start) / 1000
    wall = time.perf_counter() - wall
    rss_after, peak_after = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    closing = time.perf_counter()
    handler.close()
    close_s = time.perf_counter() - closing
    counts = handler.stats() if isinstance(handler, postbud.AlertHandler) else {}
    if mailer is not None:
        mailer.close(5)
    ordered = sorted(samples)
    print(
        json.dumps(
            {
                "p50": quantile(ordered, 0.5),
                "p99": quantile(ordered, 0.99),
                "p999": quantile(ordered, 0.999),
                "max": ordered[-1],
                "rss_mb": (rss_after - rss_before) / 2**20,
                "peak_mb": (peak_after - peak_before) / 1024,  # ru_maxrss: KiB on Linux
                "close_s": close_s,
                "wall_s": wall,
                "mails": len(transport.messages),
                "counts": counts,
            }
        )
    )


def bench_alerts(profile: Profile, rounds: int, folder: Path) -> None:
    calls = profile.alert_calls
    cases: list[tuple[str, int, str]] = [("NullHandler (logging itself)", 0, "none")]
    for store in ("spool", "memory"):
        for kinds in profile.fingerprints:
            cases.append((f"AlertHandler, {store}, {kinds:,} fingerprints", kinds, store))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
    for round_no in range(rounds):
        for name, kinds, store in cases:
            spool = "none"
            if store == "spool":
                spool = str(folder / f"alerts-{round_no}-{kinds}.sqlite")
            out = subprocess.run(
                [
                    sys.executable,
                    str(HERE),
                    "--alert-child",
                    str(kinds),
                    str(calls),
                    spool,
                ],
                check=False,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"{name}: the child failed:\n{out.stderr}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    exit_timeout = settings_for(None).exit_timeout

    def med(name: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in results[name])

    table = []
    for name, kinds, store in cases:
        base_name = f"AlertHandler, {store}, {profile.fingerprints[0]:,} fingerprints"
        ratio = ""
        if kinds == profile.fingerprints[-1]:
            r = med(name, "p999") / med(base_name, "p999")
            ratio = f"{r:.2f}× ({verdict(r <= 2)})"
        elif kinds == profile.fingerprints[0]:
            ratio = "1.00× (base)"
        close = med(name, "close_s")
        mails = statistics.median(r["mails"] for r in results[name])
        table.append(
            [
                name,
                f"{med(name, 'p50'):.1f}",
                f"{med(name, 'p99'):.1f}",
                f"{med(name, 'p999'):.1f}",
                spread([float(r["p999"]) for r in results[name]]),
                f"{med(name, 'max'):,.0f}",
                ratio,
                f"{med(name, 'rss_mb'):.1f} / {med(name, 'peak_mb'):.1f}",
                f"{close * 1000:,.1f}"
                + ("" if not kinds else f" ({verdict(close <= exit_timeout)})"),
                f"{calls / med(name, 'wall_s'):,.0f}",
                f"{mails:.0f}" if kinds else "",
            ]
        )
    print(
        f"\n### 5. AlertHandler: {calls:,} logger.error() calls over K distinct templates\n\n"
        f"Caller latency of logger.error() (the handler's emit included), µs; one fresh "
        f"process per run, median of {rounds} runs. RSS growth over the calls: the "
        "resident set right after them (/proc/self/statm) and the peak (ru_maxrss). "
        f"close(): handler.close() after the calls [target ≤ exit_timeout {exit_timeout:g} s].\n"
        "Mailer on MemoryTransport; 'spool' keeps the alert state "
        "in a spool file, 'memory' with spool=None.\n"
    )
    print(
        md(
            [
                "handler",
                "p50",
                "p99",
                "p99.9",
                "p99.9 runs min–max",
                "max",
                "p99.9 × K=10 [≤ 2×]",
                "RSS growth MB (now / peak)",
                "close() ms",
                "calls/s",
                "mails",
            ],
            table,
        )
    )


# -- 6. building a message to 100 new addresses ------------------------------------------


def bench_build(profile: Profile, rounds: int) -> None:
    n = profile.build_n
    counter = iter(range(10**9))

    def fresh() -> list[list[str]]:
        """n recipient lists of 100 addresses never used before (nor their domains)."""
        lists = []
        for _ in range(n):
            lists.append(
                [f"user{c}@host{c}.example.com" for c in (next(counter) for _ in range(100))]
            )
        return lists

    def postbud_build(lists: list[list[str]]) -> None:
        for to in lists:
            build_message(mail_from="me@gmail.com", to=to, subject="Nightly report", text=BODY)

    def stdlib_build(lists: list[list[str]]) -> None:
        for to in lists:
            msg = EmailMessage()
            msg["From"] = "me@gmail.com"
            msg["To"] = ", ".join(to)
            msg["Subject"] = "Nightly report"
            msg["Message-ID"] = make_msgid(domain="gmail.com")
            msg["Date"] = formatdate()
            msg.set_content(BODY)
            msg.as_bytes(policy=email_policy.SMTP)

    scenarios = {"stdlib EmailMessage": stdlib_build, "postbud build_message": postbud_build}
    times: dict[str, list[float]] = {name: [] for name in scenarios}
    for round_no in range(rounds + 1):
        for name, fn in scenarios.items():
            lists = fresh()  # untimed
            start = time.perf_counter()
            fn(lists)
            if round_no:
                times[name].append((time.perf_counter() - start) / n * 1e6)
    base = statistics.median(times["stdlib EmailMessage"])
    table = []
    for name, values in times.items():
        m = statistics.median(values)
        target = f"≤ 1×: {verdict(m <= base)}" if name.startswith("postbud") else ""
        table.append([name, f"{m:,.0f}", spread(values, 0), f"{m / base:.2f}×", target])
    print(
        f"\n### 6. Building one message to 100 never-seen addresses, µs per message\n\n"
        f"{n} messages per round, median of {rounds} rounds (+1 warm-up); stdlib: "
        "EmailMessage, From, To (the 100 joined), Subject, Message-ID, Date, set_content, "
        "as_bytes(policy=SMTP); postbud: build_message (validation included).\n"
    )
    print(md(["scenario", "µs/message", "min–max", "× stdlib", "target"], table))


# -- 7. import time ----------------------------------------------------------------------


def bench_import(rounds: int) -> None:
    codes = {
        "python -c pass (subtracted)": "pass",
        "import smtplib, ssl, logging": "import smtplib, ssl, logging",
        "import postbud": "import postbud",
        "import postbud; postbud.Mailer": "import postbud; postbud.Mailer",
    }
    times: dict[str, list[float]] = {name: [] for name in codes}
    for round_no in range(rounds + 1):
        for name, code in codes.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            if round_no:
                times[name].append((time.perf_counter() - start) * 1000)
    empty = statistics.median(times["python -c pass (subtracted)"])
    net = {name: statistics.median(v) - empty for name, v in times.items()}
    base = net["import smtplib, ssl, logging"]
    table = []
    for name, values in times.items():
        if name.startswith("python"):
            table.append([name, f"{empty:.1f}", spread(values), "", "", ""])
            continue
        target = ""
        if name == "import postbud":
            target = f"≤ 1.5×: {verdict(net[name] <= 1.5 * base)}"
        table.append(
            [
                name,
                f"{statistics.median(values):.1f}",
                spread(values),
                f"{net[name]:.1f}",
                f"{net[name] / base:.2f}×",
                target,
            ]
        )
    print(
        f"\n### 7. Import time in a fresh interpreter, ms\n\nWall time of "
        f"subprocess.run([python, '-c', ...]), median of {rounds} rounds (+1 warm-up), "
        "interleaved; net = minus the median of 'python -c pass'.\n"
    )
    print(md(["code", "wall ms", "min–max", "net ms", "× stdlib net", "target"], table))


# -- 8. an outage ------------------------------------------------------------------------


class FaultyFake(RemoteFake):
    """A RemoteFake from this file's ``--serve``: it can refuse every connection
    (closed before the greeting) and count connections."""

    def __init__(self, mode: str = "ssl") -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._values: dict[str, Any] = json.loads(self._proc.stdout.readline())
        self.port = self._values["port"]
        self.ca_file = self._values["ca_file"]
        self.username = self._values["username"]
        self.app_password = self._values["app_password"]
        self.mode = mode


def serve(mode: str) -> None:
    from postbud.testing import FakeGmail

    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    with FakeGmail(mode) as fake:  # type: ignore[arg-type]
        print(json.dumps(fake.settings_values(timeout=30)), flush=True)
        for line in sys.stdin:
            word = line.split()[0]
            if word == "refuse":
                fake.disconnect_next("CONNECT", times=10**9)
                answer = "ok"
            elif word == "connections":
                answer = str(fake.connections)
            elif word == "count":
                answer = str(len(fake.messages))
            elif word == "reset":  # back in service: no fault, counts from zero
                fake.reset()
                answer = "ok"
            else:
                answer = f"unknown {word}"
            print(answer, flush=True)


def schedule(duration: float) -> tuple[int, float]:
    """What the default policy allows: attempts in ``duration`` (at 0, 1, 3, 7 ... s)
    and when the next one after it falls."""
    p = DEFAULT_POLICY
    at, step, attempts = 0.0, 1, 0
    while at <= duration:
        attempts += 1
        at += min(p.connect_max, p.connect_base * 2.0 ** (step - 1))
        step += 1
    return attempts, at


def bench_outage(profile: Profile, rounds: int, folder: Path) -> None:
    duration, n = profile.outage_s, profile.outage_rows
    results = []
    with FaultyFake("ssl") as fake:
        settings = Settings(**fake.settings(spool=None))
        template = folder / "outage.template.sqlite"
        fill_spool(template, settings, n, distinct=True)
        for _ in range(rounds):
            path = folder / "outage.sqlite"
            shutil.copyfile(template, path)
            fake.command("refuse")
            cpu0, wall0 = time.process_time(), time.perf_counter()
            mailer = Mailer(**fake.settings(spool=str(path), daily_limit=10**7))
            time.sleep(duration)  # the caller does nothing: CPU here is the worker's
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            tries = int(fake.command("connections"))
            failures = mailer.stats()["retried"]
            fake.command("reset")  # the server is back
            back = time.perf_counter()
            samples = wait_sent(mailer, n, back, timeout=600 + n / 50, poll=0.005)
            first, everything = crossing(samples, 1), crossing(samples, n)
            mailer.close(10)
            assert int(fake.command("count")) == n
            fake.command("reset")
            path.unlink()
            results.append((tries, failures, 100 * cpu / wall, cpu * 1000, first, everything))
    allowed, next_at = schedule(duration)
    wait_allowed = next_at - duration
    attempts = statistics.median(r[0] for r in results)
    failed = statistics.median(r[1] for r in results)
    cpu_pct = statistics.median(r[2] for r in results)
    cpu_ms = statistics.median(r[3] for r in results)
    first = statistics.median(r[4] for r in results)
    everything = statistics.median(r[5] for r in results)
    table = [
        [
            f"connection attempts in {duration:g} s",
            f"{attempts:.0f} (worker's failed tries: {failed:.0f})",
            f"{allowed} (at 0, 1, 3, 7 … s)",
            f"{attempts / allowed:.2f}×",
            f"≤ ~10: {verdict(attempts <= 10)}",
        ],
        [
            "process CPU during the outage",
            f"{cpu_pct:.2f} % of a core ({cpu_ms:,.0f} ms)",
            "",
            "",
            f"< 5 %: {verdict(cpu_pct < 5)}",
        ],
        [
            "server back → first delivery",
            f"{first:.2f} s",
            f"{wait_allowed:.2f} s (next backoff step at {next_at:g} s)",
            f"{first / wait_allowed:.2f}×",
            f"within one step: {verdict(first <= wait_allowed + 1)}",
        ],
        [
            f"server back → all {n:,} delivered",
            f"{everything:.2f} s ({n / (everything - first):,.0f} msg/s after the first)",
            "",
            "",
            "",
        ],
    ]
    print(
        f"\n### 8. Outage: every connection closed before the greeting for {duration:g} s, "
        f"{n:,} rows queued\n\nFakeGmail in its own process (disconnect at CONNECT; "
        f"connections counted by the server), median of {rounds} round(s). Baseline: the "
        "default RetryPolicy's connection backoff (1 s × 2ⁿ, at most "
        f"{DEFAULT_POLICY.connect_max:g} s).\n"
    )
    print(md(["figure", "measured", "policy allows", "× policy", "target"], table))


# -- main --------------------------------------------------------------------------------


@contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every size 10x smaller")
    parser.add_argument(
        "--only", default=",".join(ROWS), help=f"comma-separated rows: {','.join(ROWS)}"
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds of rows 1, 2 and 6")
    parser.add_argument("--drain-rounds", type=int, default=3, help="rounds of row 3")
    parser.add_argument("--flush-rounds", type=int, default=5, help="rounds of row 4")
    parser.add_argument("--alert-rounds", type=int, default=7, help="runs of row 5")
    parser.add_argument("--import-rounds", type=int, default=11, help="rounds of row 7")
    parser.add_argument("--outage-rounds", type=int, default=1, help="rounds of row 8")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--alert-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.alert_child:
        kinds, calls, spool = args.alert_child
        alert_child(int(kinds), int(calls), spool)
        return
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    profile = QUICK if args.quick else FULL
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("postbud").setLevel(logging.ERROR)  # the outage's warnings
    total = time.perf_counter()
    print(
        f"\nProfile: {'quick' if args.quick else 'full'}; Python {sys.version.split()[0]}; "
        f"postbud {postbud.__version__} from {Path(postbud.__file__).parent}."
    )
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if "ledger" in only:
            with timed("row 1"):
                bench_ledger(profile, args.rounds, folder)
        if "stats" in only:
            with timed("row 2"):
                bench_stats(profile, args.rounds, folder)
        if "drain" in only or "flush" in only:
            with RemoteFake("ssl") as fake:
                if "drain" in only:
                    with timed("row 3"):
                        bench_drain(profile, args.drain_rounds, fake, folder)
                if "flush" in only:
                    with timed("row 4"):
                        bench_flush(profile, args.flush_rounds, fake, folder)
        if "alerts" in only:
            with timed("row 5"):
                bench_alerts(profile, args.alert_rounds, folder)
        if "build" in only:
            with timed("row 6"):
                bench_build(profile, args.rounds)
        if "import" in only:
            with timed("row 7"):
                bench_import(args.import_rounds)
        if "outage" in only:
            with timed("row 8"):
                bench_outage(profile, args.outage_rounds, folder)
    print(f"\n(total: {time.perf_counter() - total:.0f} s)")


if __name__ == "__main__":
    main()
