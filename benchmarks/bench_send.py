"""Throughput of N messages over one connection: postbud vs what users pick instead.

Scenarios, interleaved in one run against the same in-process FakeGmail:

- floor: raw ``smtplib.SMTP_SSL`` on one connection, each message built with
  ``EmailMessage`` + ``set_content`` (what a careful hand-written script does);
- postbud: ``Mailer.send`` on its reused connection;
- django: Django's SMTP backend ``send_messages`` (one connection, use_ssl);
- smtphandler: stdlib ``logging.handlers.SMTPHandler`` (a connection, STARTTLS and
  login per record — that is how it works).

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_send.py [--n 300 --rounds 5]``.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

from _harness import run_rounds, smtplib_floor, stdlib_smtp_handler, table
from postbud.testing import FakeGmail

TO = "you@example.com"
BODY = "Hello,\n\nthis is message {i} of the benchmark. " + "Some text. " * 40 + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--smtphandler-n",
        type=int,
        default=50,
        help="SMTPHandler opens a connection per record; fewer keep it short",
    )
    args = parser.parse_args()
    n = args.n
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    with FakeGmail("ssl") as fake, FakeGmail("starttls") as fake587:
        os.environ["SSL_CERT_FILE"] = fake.ca_file  # how a CA reaches Django's backend
        context = fake.ssl_context()
        mailer = fake.mailer(spool=None, daily_limit=10**9)  # no quota in a benchmark

        def floor() -> int:
            smtplib_floor(fake.port, context, fake.username, fake.app_password, n, BODY)
            return n

        def postbud() -> int:
            with mailer.connect():
                for i in range(n):
                    mailer.send(TO, f"Message {i}", BODY.format(i=i))
            return n

        import django
        from django.conf import settings as dj_settings

        if not dj_settings.configured:
            dj_settings.configure(
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=fake.port,
                EMAIL_USE_SSL=True,
                EMAIL_HOST_USER=fake.username,
                EMAIL_HOST_PASSWORD=fake.app_password,
                EMAIL_TIMEOUT=10,
                DEFAULT_CHARSET="utf-8",
            )
            django.setup()
        from django.core.mail import EmailMessage as DjangoMessage
        from django.core.mail.backends.smtp import EmailBackend

        def django_backend() -> int:
            backend = EmailBackend()
            messages = [
                DjangoMessage(f"Message {i}", BODY.format(i=i), fake.username, [TO])
                for i in range(n)
            ]
            sent = backend.send_messages(messages)
            assert sent == n, sent
            return n

        handler = stdlib_smtp_handler(fake587.port, fake587.username, fake587.app_password, TO)
        hlog = logging.getLogger("bench.smtphandler")
        hlog.propagate = False
        hlog.addHandler(handler)

        def smtphandler() -> int:
            for i in range(args.smtphandler_n):
                hlog.error(BODY.format(i=i))
            return args.smtphandler_n

        scenarios = {
            "smtplib + EmailMessage (floor)": floor,
            "postbud Mailer.send": postbud,
            "Django SMTP backend send_messages": django_backend,
            f"stdlib SMTPHandler (n={args.smtphandler_n})": smtphandler,
        }
        rates = run_rounds(scenarios, args.rounds)
        received = len(fake.messages) + len(fake587.messages)
        print(
            f"\nN={n} messages of ~{len(BODY)} bytes, one recipient, {args.rounds} rounds "
            f"(+1 warm-up), Python {sys.version.split()[0]}; {received} messages received.\n"
        )
        print(table(rates, "smtplib + EmailMessage (floor)"))


if __name__ == "__main__":
    main()
