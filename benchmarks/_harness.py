"""Interleaved rounds and medians: the machine is shared and noisy, so every benchmark
runs its scenarios in turn (A B C A B C ...) and compares medians within one run."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import smtplib
import ssl
import statistics
import time
from collections.abc import Callable
from email.message import EmailMessage

Scenario = Callable[[], int]  # runs one round, returns how many messages it handled


def run_rounds(
    scenarios: dict[str, Scenario], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run every scenario ``rounds`` times, interleaved; return messages/s per round."""
    rates: dict[str, list[float]] = {name: [] for name in scenarios}
    for round_no in range(warmup + rounds):
        for name, scenario in scenarios.items():
            start = time.perf_counter()
            count = scenario()
            elapsed = time.perf_counter() - start
            if round_no >= warmup:
                rates[name].append(count / elapsed)
    return rates


def table(rates: dict[str, list[float]], floor: str) -> str:
    """A Markdown table of median rates and their ratio to the ``floor`` scenario."""
    base = statistics.median(rates[floor])
    lines = [
        "| scenario | median msg/s | min–max msg/s | × floor |",
        "|---|---:|---:|---:|",
    ]
    for name, values in rates.items():
        med = statistics.median(values)
        lines.append(
            f"| {name} | {med:,.0f} | {min(values):,.0f}–{max(values):,.0f} | {med / base:.2f}× |"
        )
    return "\n".join(lines)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples``."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def timed_calls(call: Callable[[int], object], n: int) -> list[float]:
    """Microseconds each of ``n`` calls ``call(i)`` took."""
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        call(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def stdlib_smtp_handler(port: int, username: str, password: str, to: str) -> logging.Handler:
    """The stdlib's SMTPHandler as users configure it for STARTTLS on port 587 (it does
    not verify the certificate: smtplib without a context)."""
    return logging.handlers.SMTPHandler(
        ("127.0.0.1", port),
        username,
        [to],
        "Alert",
        credentials=(username, password),
        secure=(),
        timeout=10,
    )


def queued_smtp_handler(
    smtp: logging.Handler,
) -> tuple[logging.Handler, logging.handlers.QueueListener, queue.Queue[logging.LogRecord]]:
    """QueueHandler + QueueListener(SMTPHandler), started. A Queue, not a SimpleQueue:
    the listener marks each record done, so ``q.join()`` waits for the last mail."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(q, smtp)
    listener.start()
    return logging.handlers.QueueHandler(q), listener, q


def latency_rounds(
    scenarios: dict[str, tuple[Callable[[int], object], int]],
    rounds: int,
    settle: Callable[[str], None],
    prepare: Callable[[str], None] | None = None,
    *,
    bursts: int = 1,
    alternate: bool = False,
) -> dict[str, list[tuple[float, float]]]:
    """(p50, p99) of every scenario in each of ``rounds`` rounds.

    A round is ``bursts`` passes; a pass times each scenario once (a burst of its n
    calls), in turn. A round's p50 and p99 are those of all its bursts' calls
    together: with one burst of 300 calls the p99 is the 3rd slowest, and whether 3
    calls of a 5 ms burst meet an interruption is close to a coin toss; over 3 bursts
    it is the 9th slowest of 900, a steadier figure.

    ``settle(name)`` runs after each burst: its background work must end before the
    next one is timed, so no scenario pays for another's (its own it does pay for).
    ``prepare(name)``, if given, runs untimed before each burst.

    Each burst's timed calls follow n/30 untimed ones (at least one) made just
    before: after an idle moment (a 50 ms server leaves the CPU idle) the first calls
    meet cold caches, and with the 3rd slowest of 300 calls as p99 those would decide
    it, for one server speed more than the other.

    With ``alternate``, every other pass runs the scenarios in reverse order, so none
    always follows the same neighbour.
    """
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
    for round_no in range(rounds):
        samples: dict[str, list[float]] = {name: [] for name in scenarios}
        for pass_no in range(bursts):
            names = list(scenarios)
            if alternate and (round_no * bursts + pass_no) % 2:
                names.reverse()
            for name in names:
                call, n = scenarios[name]
                if prepare is not None:
                    prepare(name)
                for i in range(n, n + max(1, n // 30)):  # warm-up: other i than the timed
                    call(i)
                samples[name] += timed_calls(call, n)
                settle(name)
        for name, values in samples.items():
            results[name].append(percentiles(values))
    return results


LatencyRows = dict[str, dict[str, list[tuple[float, float]]]]


def latency_table(rows: LatencyRows, first_column: str, digits: int = 0) -> str:
    """Markdown: per scenario, the median p50 and p99 of each server speed's rounds."""
    speeds = list(rows)
    lines = [
        f"| {first_column} | " + " | ".join(f"{s}: p50 | {s}: p99" for s in speeds) + " |",
        "|---|" + "---:|" * (2 * len(speeds)),
    ]
    for name in rows[speeds[0]]:
        cells = []
        for speed in speeds:
            p50s, p99s = zip(*rows[speed][name])
            cells += [f"{statistics.median(v):,.{digits}f}" for v in (p50s, p99s)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smtplib_floor(
    port: int, context: ssl.SSLContext, username: str, password: str, n: int, body: str
) -> None:
    """The floor every send benchmark compares with: raw smtplib on one implicit-TLS
    connection, each message built with ``EmailMessage`` + ``set_content``."""
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context) as smtp:
        smtp.login(username, password)
        for i in range(n):
            msg = EmailMessage()
            msg["From"] = username
            msg["To"] = "you@example.com"
            msg["Subject"] = f"Message {i}"
            msg.set_content(body.format(i=i))
            smtp.send_message(msg)
