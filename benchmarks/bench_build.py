"""Cost of building one message, to wire bytes: postbud vs the stdlib ways.

- stdlib EmailMessage: ``EmailMessage`` + ``set_content`` + ``as_bytes`` (SMTP policy),
  what the floor of bench_send.py does per message;
- stdlib email.mime: ``MIMEText`` (compat32), what Django and Flask-Mail use;
- postbud: ``build_message`` (validation, Message-ID, Date and rendering included).

Run: ``.venv/bin/python benchmarks/bench_build.py [--n 2000 --rounds 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from postbud._message import build_message

BODY = "Hello,\n\nthis is a benchmark message. " + "Some text. " * 40 + "\n"
HTML = "<p>Hello,</p><p>this is a <b>benchmark</b> message.</p>" * 5


def stdlib_email_message(html: bool) -> bytes:
    msg = EmailMessage()
    msg["From"] = "me@gmail.com"
    msg["To"] = "you@example.com"
    msg["Subject"] = "Nightly report"
    msg["Message-ID"] = make_msgid(domain="gmail.com")
    msg["Date"] = formatdate()
    msg.set_content(BODY)
    if html:
        msg.add_alternative(HTML, subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def stdlib_mime(html: bool) -> bytes:
    msg = MIMEText(BODY, "plain", "utf-8")
    msg["From"] = "me@gmail.com"
    msg["To"] = "you@example.com"
    msg["Subject"] = "Nightly report"
    msg["Message-ID"] = make_msgid(domain="gmail.com")
    msg["Date"] = formatdate()
    return msg.as_bytes()


def postbud_build(html: bool) -> bytes:
    return build_message(
        mail_from="me@gmail.com",
        to="you@example.com",
        subject="Nightly report",
        text=BODY,
        html=HTML if html else None,
    ).data


def per_message_us(fn: Callable[[], bytes], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    scenarios: dict[str, Callable[[], bytes]] = {
        "stdlib EmailMessage, text": lambda: stdlib_email_message(False),
        "stdlib email.mime MIMEText, text": lambda: stdlib_mime(False),
        "postbud build_message, text": lambda: postbud_build(False),
        "stdlib EmailMessage, text + html": lambda: stdlib_email_message(True),
        "postbud build_message, text + html": lambda: postbud_build(True),
    }
    times: dict[str, list[float]] = {name: [] for name in scenarios}
    for fn in scenarios.values():  # warm-up
        per_message_us(fn, 50)
    for _ in range(args.rounds):
        for name, fn in scenarios.items():
            times[name].append(per_message_us(fn, args.n))
    base = statistics.median(times["stdlib EmailMessage, text"])
    print(
        f"\nBuilding one message to bytes, {args.n} per round, {args.rounds} rounds, "
        f"Python {sys.version.split()[0]}.\n"
    )
    print("| scenario | median µs/message | min–max | vs stdlib EmailMessage |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"| {name} | {med:.1f} | {min(values):.1f}–{max(values):.1f} | "
            f"{base / med:.1f}× faster |"
            if med < base
            else f"| {name} | {med:.1f} | {min(values):.1f}–{max(values):.1f} | "
            f"{med / base:.2f}× the time |"
        )


if __name__ == "__main__":
    main()
