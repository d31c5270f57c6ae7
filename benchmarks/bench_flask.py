"""Flask: ``flask_postbud.Postbud`` next to Flask-Mail 0.10 (issue 19).

The apps are configured with the same Flask-Mail keys (``MAIL_SERVER``, ``MAIL_PORT``,
``MAIL_USE_SSL``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``: the
one-line switch reads them), one app per library (and per spool), and talk to the same
FakeGmail over TLS (implicit TLS, as on port 465), in another process
(``_remote_fake.py``): Gmail's work does not compete with Flask for the GIL in
production, so it must not here either. postbud trusts the fake's CA through
``POSTBUD_CA_FILE`` and verifies the certificate and the host name. Flask-Mail verifies
nothing: it calls ``smtplib.SMTP_SSL(server, port)`` without a context, and smtplib
then uses ``ssl._create_stdlib_context()``, an unverified context (no CA, no host name
check), so it needs no ``SSL_CERT_FILE`` and would talk to anybody's certificate. Its
handshake is thereby a little cheaper than postbud's; the tables include that.

1. Throughput: 300 sends on one connection. Flask-Mail: ``with mail.connect() as conn:
   conn.send(msg)`` for N ``flask_mail.Message`` objects; flask_postbud: ``with
   postbud.connect(): postbud.send(to=..., subject=..., text=...)`` for N sets of
   keyword arguments, with the spool on disk (a SQLite file, the default kind; its
   quota ledger is a table there, written for every message) and ``POSTBUD_SPOOL = ""``
   (memory); and the switched Flask-Mail app (``flask_postbud.Message`` through
   ``conn.send``, spool on disk). The messages (or arguments) are built before the clock
   starts, each the way its library's user builds them; Flask-Mail's ``Message()``
   calls ``make_msgid()`` (so ``socket.getfqdn()``) there, outside the clock. Each batch
   runs in an app context (as in a view or a CLI command), and both libraries connect,
   log in and QUIT in the timed block. Messages/s, and the ratio to Flask-Mail (the
   median over rounds of each round's ratio); goal ≥ 1.2×.
2. Request latency: a view that sends one mail, through Flask's test client (routing,
   request and response objects, the contexts), with the server delaying every reply
   by 50 ms (the greeting, EHLO, AUTH, MAIL, RCPT, DATA, QUIT: what
   ``FakeGmail.delay(0.05)`` does, set per command through ``_remote_fake.py``). The
   added p50/p99 is over the same request to a view that sends nothing, paired within
   each round. Goal: ``submit`` adds at most 1/20 of the p99 Flask-Mail's ``mail.send``
   adds. Rows: Flask-Mail (a connection per ``mail.send``: 7 delayed replies, ~360 ms),
   flask_postbud ``send`` (blocking, on the app's kept connection), and ``submit`` with
   the spool on disk (the guarantee) and in memory.

The latency rounds are those of bench_django.py (``_harness.latency_rounds``): a round
is ``--bursts`` passes, each timing every scenario's burst of requests in turn (every
other pass in reverse order), after ``n/30`` untimed requests and a 50 ms pause; a
round's p50/p99 is over all its bursts' requests, and the table gives medians over
rounds. After each flask_postbud burst the app's outbox is delivered untimed at full
server speed, so no burst pays for another's backlog.

Run: ``.venv/bin/python benchmarks/bench_flask.py`` (about 2 minutes on the shared
2-core machine; ``--quick``: about 15 seconds) or ``make bench``; options ``--n 300
--rounds 5 --requests 300 --blocking-requests 10 --latency-rounds 5 --bursts 3``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import latency_rounds
from _remote_fake import RemoteFake

TO = "you@example.com"
BODY = "Hello,\n\nthis is message {i} of the benchmark. " + "Some text. " * 40 + "\n"
#: Every reply the two clients wait for (DATA's second reply, after the body, is not
#: delayed: FakeGmail delays one reply per command).
COMMANDS = ("CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "NOOP", "RSET", "QUIT")
DELAY = 0.05
#: Every burst starts after this long idle (bench_outbox.py's reasons).
PAUSE = 0.05
HERE = Path(__file__).resolve().parent


# -- the apps ----------------------------------------------------------------------------


def mail_config(fake: RemoteFake) -> dict[str, Any]:
    """Flask-Mail's keys for Gmail on port 465, pointed at the fake; both apps get them.
    ``PROPAGATE_EXCEPTIONS``: a failing send raises in the benchmark, not a quiet 500."""
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": fake.port,
        "MAIL_USE_SSL": True,
        "MAIL_USERNAME": fake.username,
        "MAIL_PASSWORD": fake.app_password,
        "MAIL_DEFAULT_SENDER": fake.username,
        "PROPAGATE_EXCEPTIONS": True,
    }


def flask_mail_app(fake: RemoteFake) -> tuple[Any, Any]:
    """(app, mail): a Flask-Mail app as its docs teach, with the two views."""
    from flask import Flask
    from flask_mail import Mail, Message

    app = Flask("bench_flask_mail", root_path=str(HERE))
    app.config.update(mail_config(fake))
    mail = Mail()
    mail.init_app(app)

    @app.get("/nothing")
    def nothing() -> str:
        return "ok"

    @app.get("/send")
    def send() -> str:
        mail.send(Message("Welcome", recipients=[TO], body=BODY.format(i=0)))
        return "sent"

    return app, mail


def postbud_app(fake: RemoteFake, postbud: Any, spool: Path | None) -> Any:
    """The same app switched to flask_postbud, plus what only postbud has: the fake's CA,
    a quota a benchmark never hits, the spool (``None``: in memory)."""
    from flask import Flask

    app = Flask("bench_flask_postbud", root_path=str(HERE))
    app.config.update(mail_config(fake))
    app.config.update(
        POSTBUD_CA_FILE=fake.ca_file,
        POSTBUD_DAILY_LIMIT=10**9,
        POSTBUD_SPOOL="" if spool is None else str(spool),
    )
    postbud.init_app(app)

    @app.get("/nothing")
    def nothing() -> str:
        return "ok"

    @app.get("/send")
    def send() -> str:
        postbud.send(to=TO, subject="Welcome", text=BODY.format(i=0))
        return "sent"

    @app.get("/submit")
    def submit() -> str:
        postbud.submit(to=TO, subject="Welcome", text=BODY.format(i=0))
        return "queued"

    return app


class Apps:
    """The three apps of the run and their extensions."""

    def __init__(self, fake: RemoteFake, spool: Path) -> None:
        from flask_postbud import Postbud

        self.flask_mail, self.mail = flask_mail_app(fake)
        self.postbud = Postbud()  # one extension object, two apps (each its own Mailer)
        self.disk = postbud_app(fake, self.postbud, spool)
        self.memory = postbud_app(fake, self.postbud, None)

    def close(self) -> None:
        """Close the apps' Mailers (before the spool's folder goes)."""
        for app in (self.disk, self.memory):
            app.extensions["postbud"].close(5)


def set_delay(fake: RemoteFake, seconds: float) -> None:
    for command in COMMANDS:
        fake.command(f"delay {command} {seconds}")


# -- 1. throughput -----------------------------------------------------------------------

FLASK_MAIL_ROW = "Flask-Mail 0.10"
Batch = Callable[[int], Callable[[], int]]  # n -> (the timed part -> messages sent)


def throughput(args: argparse.Namespace, fake: RemoteFake, apps: Apps) -> None:
    import flask_mail

    import flask_postbud

    def with_flask_mail(n: int) -> Callable[[], int]:
        messages = [
            flask_mail.Message(f"Message {i}", recipients=[TO], body=BODY.format(i=i))
            for i in range(n)
        ]

        def timed() -> int:
            with apps.mail.connect() as conn:
                for message in messages:
                    conn.send(message)
            return len(messages)

        return timed

    def with_send(n: int) -> Callable[[], int]:
        calls = [{"to": TO, "subject": f"Message {i}", "text": BODY.format(i=i)} for i in range(n)]

        def timed() -> int:
            with apps.postbud.connect():
                for kwargs in calls:
                    apps.postbud.send(**kwargs)
            return len(calls)

        return timed

    def with_message(n: int) -> Callable[[], int]:
        messages = [
            flask_postbud.Message(f"Message {i}", recipients=[TO], body=BODY.format(i=i))
            for i in range(n)
        ]

        def timed() -> int:
            with apps.postbud.connect() as conn:
                for message in messages:
                    conn.send(message)
            return len(messages)

        return timed

    n: int = args.n
    # name -> (the app whose context the batch runs in, the batch)
    batches: dict[str, tuple[Any, Batch]] = {
        FLASK_MAIL_ROW: (apps.flask_mail, with_flask_mail),
        "flask_postbud send(), spool on disk": (apps.disk, with_send),
        "flask_postbud send(), spool in memory": (apps.memory, with_send),
        "flask_postbud Message + conn.send, spool on disk": (apps.disk, with_message),
    }
    rates: dict[str, list[float]] = {name: [] for name in batches}
    for round_no in range(args.rounds + 1):  # +1 warm-up
        names = list(batches)
        if round_no % 2:
            names.reverse()
        for name in names:
            app, batch = batches[name]
            with app.app_context():
                timed = batch(n)  # built before the clock, in the app (Flask-Mail needs it)
                start = time.perf_counter()
                sent = timed()
                elapsed = time.perf_counter() - start
            assert sent == n, (name, sent)
            received = int(fake.command("count"))
            assert received == n, (name, received)
            fake.command("reset")
            if round_no:
                rates[name].append(n / elapsed)
    base = rates[FLASK_MAIL_ROW]

    def ratio_of(name: str) -> float:
        """The median over rounds of the round's rate ÷ Flask-Mail's in that round: the
        rows run back to back in a round, so a machine that slows down for a while
        slows a round's rows alike, not one row's median."""
        return statistics.median(own / other for own, other in zip(rates[name], base))

    print(
        f"\n### 1. N={n} sends on one connection\n\n"
        f"Messages/s, medians of {args.rounds} rounds (+1 warm-up), alternating order; "
        "× Flask-Mail is the median of each round's ratio.\n"
    )
    print("| library | median msg/s | min–max msg/s | × Flask-Mail |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"| {name} | {med:,.0f} | {min(values):,.0f}–{max(values):,.0f} "
            f"| {ratio_of(name):.2f}× |"
        )
    ratio = ratio_of("flask_postbud send(), spool on disk")
    verdict = "met" if ratio >= 1.2 else "NOT met"
    print(
        f"\nGoal ≥ 1.20× Flask-Mail's rate (send(), spool on disk, the default): "
        f"{ratio:.2f}×, {verdict}."
    )


# -- 2. request latency ------------------------------------------------------------------

BASELINE = "view sending nothing"
FLASK_MAIL_SEND = "Flask-Mail mail.send"
SUBMIT_DISK = "flask_postbud submit, spool on disk"


def latency(args: argparse.Namespace, fake: RemoteFake, apps: Apps) -> None:
    clients = {app: app.test_client() for app in (apps.flask_mail, apps.disk, apps.memory)}

    def request(app: Any, path: str) -> Callable[[int], object]:
        client = clients[app]

        def call(i: int) -> object:
            response = client.get(path)
            assert response.status_code == 200, response
            return response

        return call

    # name -> (app, path, requests per burst). The baseline is the Flask-Mail app's: a
    # request that sends nothing costs the same in all three apps (neither extension
    # hooks into requests).
    configs: dict[str, tuple[Any, str, int]] = {
        BASELINE: (apps.flask_mail, "/nothing", args.requests),
        FLASK_MAIL_SEND: (apps.flask_mail, "/send", args.blocking_requests),
        "flask_postbud send, blocking": (apps.disk, "/send", args.blocking_requests),
        SUBMIT_DISK: (apps.disk, "/submit", args.requests),
        "flask_postbud submit, spool in memory": (apps.memory, "/submit", args.requests),
    }

    def prepare(name: str) -> None:
        time.sleep(PAUSE)

    def settle(name: str) -> None:
        """Deliver the burst's queue at full speed, untimed, check that every request's
        mail arrived (the burst's n timed requests and latency_rounds' n/30 untimed
        ones before them); then the server forgets its mail."""
        app, path, n = configs[name]
        if app is not apps.flask_mail:
            set_delay(fake, 0)
            assert apps.postbud.flush(120, app=app)
            set_delay(fake, DELAY)
        expected = 0 if path == "/nothing" else n + max(1, n // 30)
        received = int(fake.command("count"))
        assert received == expected, (name, received, expected)
        fake.command("reset")

    scenarios = {name: (request(app, path), n) for name, (app, path, n) in configs.items()}
    set_delay(fake, DELAY)
    try:
        results = latency_rounds(
            scenarios, args.latency_rounds, settle, prepare, bursts=args.bursts, alternate=True
        )
    finally:
        set_delay(fake, 0)

    def added(name: str, which: int) -> float:
        """Median over rounds of this round's percentile minus the baseline's, in ms."""
        pairs = zip(results[name], results[BASELINE])
        return statistics.median(own[which] - base[which] for own, base in pairs) / 1000

    flask_mail_p99 = added(FLASK_MAIL_SEND, 1)
    print(
        f"\n### 2. Request latency of a view that sends one mail, server delaying every "
        f"reply by {DELAY * 1000:.0f} ms\n\n"
        f"Milliseconds, through Flask's test client; medians over {args.latency_rounds} "
        f"rounds of each round's p50 and p99 over {args.bursts} bursts; added = over the "
        f"view sending nothing, in the same round.\n"
    )
    print(
        "| scenario | requests/burst | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| added p99 ÷ Flask-Mail's |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in results.items():
        p50 = statistics.median(v[0] for v in values) / 1000
        p99 = statistics.median(v[1] for v in values) / 1000
        n = configs[name][2]
        if name == BASELINE:
            print(f"| {name} | {n} | {p50:.3f} | {p99:.3f} | – | – | – |")
            continue
        share = added(name, 1) / flask_mail_p99
        print(
            f"| {name} | {n} | {p50:.3f} | {p99:.3f} | {added(name, 0):.3f} "
            f"| {added(name, 1):.3f} | {fraction(share)} |"
        )
    share = added(SUBMIT_DISK, 1) / flask_mail_p99
    verdict = "met" if share <= 1 / 20 else "NOT met"
    print(
        f"\nGoal: submit's added p99 ≤ 1/20 of Flask-Mail's mail.send (spool on disk, the "
        f"guarantee): {fraction(share)}, {verdict}."
    )


def fraction(share: float) -> str:
    """0.004 as "1/250" (and 1.0 as "1.00×"); what the goal is written in."""
    if share <= 0:
        return "≤ 0"
    return f"1/{1 / share:,.0f}" if share < 1 else f"{share:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    parser.add_argument("--n", type=int, default=300, help="sends per connection")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds")
    parser.add_argument("--requests", type=int, default=300, help="requests per fast burst")
    parser.add_argument(
        "--blocking-requests",
        type=int,
        default=10,
        help="requests per burst of a blocking send (each waits for the 50 ms server)",
    )
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--bursts", type=int, default=3, help="bursts per latency round")
    if parser.parse_args().quick:  # smaller defaults; options given still win
        parser.set_defaults(
            n=100, rounds=3, requests=100, blocking_requests=5, latency_rounds=3, bursts=1
        )
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as folder, RemoteFake("ssl") as fake:
        apps = Apps(fake, Path(folder) / "spool.sqlite")
        try:
            throughput(args, fake, apps)
            latency(args, fake, apps)
        finally:
            apps.close()  # before the folder of the spool goes
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("Flask", "Flask-Mail")
    )
    print(f"\nPython {sys.version.split()[0]}, {versions}.")


if __name__ == "__main__":
    main()
