"""Django: ``django_postbud.EmailBackend`` next to Django's own SMTP backend (issue 18).

Both backends are configured by the same Django settings (the legacy ``EMAIL_*`` ones: the
one-line switch is ``EMAIL_BACKEND``) and talk to the same FakeGmail over verified TLS
(implicit TLS, as on port 465), in another process (``_remote_fake.py``): Gmail's work
does not compete with Django for the GIL in production, so it must not here either.
Each trusts the fake's CA the way it is documented to: postbud through
``POSTBUD["CA_FILE"]``, Django's backend (``ssl.create_default_context()``) through
``SSL_CERT_FILE``; both verify the certificate against that one CA.

1. Throughput: ``with get_connection(backend) as c: c.send_messages(messages)`` with N
   Django ``EmailMessage`` objects (built before the clock starts, the same for both),
   messages/s and the ratio to Django's SMTP backend (the median over rounds of each
   round's ratio); goal ≥ 1.2×. postbud's rows: the
   default spool on disk (its quota ledger is a table there, written for every message)
   and ``spool=None`` (the ledger in memory). The connection is Django's own for Django
   (connect, TLS, login, QUIT per batch) and the alias's pooled one for postbud (logged
   in by ``open()``, kept after ``close()``): each backend as it works.
2. Request latency: a view that calls ``send_mail()`` once, through Django's test client
   (URL resolution, request and response objects; no middleware), with the server
   delaying every reply by 50 ms (the greeting, EHLO, AUTH, MAIL, RCPT, DATA, QUIT: what
   ``FakeGmail.delay(0.05)`` does, set per command through ``_remote_fake.py``). The
   added p50/p99 is over the same request to a view that sends nothing, paired within
   each round. Goal: ``BACKGROUND`` adds at most 1/20 of the p99 Django's SMTP backend
   adds. Rows: Django's SMTP backend (a connection per request: 7 delayed replies, ~375 ms),
   django_postbud blocking (the pooled connection: MAIL, RCPT, DATA), and
   ``BACKGROUND`` with the spool on disk (the guarantee) and in memory.

The latency rounds are those of bench_outbox.py (``_harness.latency_rounds``): a round
is ``--bursts`` passes, each timing every scenario's burst of requests in turn (every
other pass in reverse order), after ``n/30`` untimed requests and a 50 ms pause; a
round's p50/p99 is over all its bursts' requests, and the table gives medians over
rounds. After each ``BACKGROUND`` burst, the outbox is delivered untimed at full server
speed, so no burst pays for another's backlog. The scenarios switch by setting
``EMAIL_BACKEND``/``POSTBUD`` on ``django.conf.settings`` directly, not with
``override_settings``: its ``setting_changed`` would make django_postbud close and
rebuild its Mailer at every switch, and a site's settings do not change between its
requests.

Run: ``.venv/bin/python benchmarks/bench_django.py`` (about 2-3 minutes on the shared
2-core machine; ``--quick``: under a minute) or ``make bench``; options ``--n 300
--rounds 5 --requests 300 --blocking-requests 10 --latency-rounds 5 --bursts 3``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _harness import latency_rounds
from _remote_fake import RemoteFake

TO = "you@example.com"
BODY = "Hello,\n\nthis is message {i} of the benchmark. " + "Some text. " * 40 + "\n"
DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
POSTBUD = "django_postbud.EmailBackend"
#: Every reply the two clients wait for (DATA's second reply, after the body, is not
#: delayed: FakeGmail delays one reply per command).
COMMANDS = ("CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "NOOP", "RSET", "QUIT")
DELAY = 0.05
#: Every burst starts after this long idle (bench_outbox.py's reasons).
PAUSE = 0.05
URLCONF = "_bench_django_urls"


# -- the site ----------------------------------------------------------------------------


def nothing_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def send_view(request: Any) -> Any:
    """What a site's view does: one ``send_mail()`` with the site's EMAIL_BACKEND."""
    from django.core.mail import send_mail
    from django.http import HttpResponse

    sent = send_mail("Welcome", BODY.format(i=0), None, [TO])
    return HttpResponse(str(sent))


def install_urlconf() -> None:
    from django.urls import path

    module = types.ModuleType(URLCONF)
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("nothing/", nothing_view),
        path("send/", send_view),
    ]
    sys.modules[URLCONF] = module


def site_settings(fake: RemoteFake, spool: Path) -> dict[str, Any]:
    """A Django site that sends through Gmail with Django's SMTP settings, plus POSTBUD
    for what only postbud has (the CA file of the fake, a quota a benchmark never hits,
    a spool in a temporary folder)."""
    return {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["testserver"],
        "ROOT_URLCONF": URLCONF,
        "MIDDLEWARE": [],
        "EMAIL_BACKEND": DJANGO_SMTP,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": fake.port,
        "EMAIL_USE_SSL": True,
        "EMAIL_HOST_USER": fake.username,
        "EMAIL_HOST_PASSWORD": fake.app_password,
        "EMAIL_TIMEOUT": 30,
        "DEFAULT_FROM_EMAIL": fake.username,
        "POSTBUD": postbud_settings(fake, spool),
    }


def postbud_settings(fake: RemoteFake, spool: Path | None, **more: Any) -> dict[str, Any]:
    """``settings.POSTBUD``; ``spool=None`` keeps the outbox (and the ledger) in memory."""
    spool_value = None if spool is None else str(spool)
    return {"CA_FILE": fake.ca_file, "DAILY_LIMIT": 10**9, "SPOOL": spool_value, **more}


@contextmanager
def django_site(fake: RemoteFake, spool: Path) -> Iterator[None]:
    """Django configured for this benchmark. ``make bench`` runs every benchmark in one
    process and bench_send.py configures Django first: then override_settings."""
    import django
    from django.conf import settings
    from django.test.utils import override_settings

    install_urlconf()
    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8")
        django.setup()
    with override_settings(**site_settings(fake, spool)):
        yield


def set_delay(fake: RemoteFake, seconds: float) -> None:
    for command in COMMANDS:
        fake.command(f"delay {command} {seconds}")


# -- 1. throughput -----------------------------------------------------------------------


def throughput(args: argparse.Namespace, fake: RemoteFake) -> None:
    from django.core.mail import EmailMessage, get_connection

    n: int = args.n
    connections: dict[str, Callable[[], Any]] = {
        "Django SMTP backend": lambda: get_connection(DJANGO_SMTP),
        "django_postbud, spool on disk": lambda: get_connection(POSTBUD, background=False),
        "django_postbud, spool in memory": lambda: get_connection(
            POSTBUD, background=False, spool=None
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in connections}
    for round_no in range(args.rounds + 1):  # +1 warm-up
        names = list(connections)
        if round_no % 2:
            names.reverse()
        for name in names:
            messages = [
                EmailMessage(f"Message {i}", BODY.format(i=i), None, [TO]) for i in range(n)
            ]
            start = time.perf_counter()
            with connections[name]() as connection:
                sent = connection.send_messages(messages)
            elapsed = time.perf_counter() - start
            assert sent == n, (name, sent)
            received = int(fake.command("count"))
            assert received == n, (name, received)
            fake.command("reset")
            if round_no:
                rates[name].append(n / elapsed)
    django = rates["Django SMTP backend"]

    def ratio_of(name: str) -> float:
        """The median over rounds of the round's rate ÷ Django's in that round: the
        three backends run back to back in a round, so a machine that slows down for a
        while slows a round's three alike, not one backend's median."""
        return statistics.median(own / base for own, base in zip(rates[name], django))

    print(
        f"\n### 1. send_messages of N={n} messages on one connection\n\n"
        f"Messages/s, medians of {args.rounds} rounds (+1 warm-up), alternating order; "
        "× Django is the median of each round's ratio.\n"
    )
    print("| backend | median msg/s | min–max msg/s | × Django |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"| {name} | {med:,.0f} | {min(values):,.0f}–{max(values):,.0f} "
            f"| {ratio_of(name):.2f}× |"
        )
    ratio = ratio_of("django_postbud, spool on disk")
    verdict = "met" if ratio >= 1.2 else "NOT met"
    print(f"\nGoal ≥ 1.20× Django's rate (spool on disk, the default): {ratio:.2f}×, {verdict}.")


# -- 2. request latency ------------------------------------------------------------------

BASELINE = "view sending nothing"
DJANGO_ROW = "Django SMTP backend"


def latency(args: argparse.Namespace, fake: RemoteFake, spool: Path) -> None:
    from django.conf import settings
    from django.core.mail import get_connection
    from django.test import Client

    client = Client()

    def request(path: str) -> Callable[[int], object]:
        def call(i: int) -> object:
            response = client.get(path)
            assert response.status_code == 200, response
            return response

        return call

    # name -> (path, EMAIL_BACKEND, POSTBUD, requests per burst)
    configs: dict[str, tuple[str, str, dict[str, Any], int]] = {
        BASELINE: ("/nothing/", DJANGO_SMTP, postbud_settings(fake, spool), args.requests),
        DJANGO_ROW: ("/send/", DJANGO_SMTP, postbud_settings(fake, spool), args.blocking_requests),
        "django_postbud, blocking": (
            "/send/",
            POSTBUD,
            postbud_settings(fake, spool),
            args.blocking_requests,
        ),
        "django_postbud BACKGROUND, spool on disk": (
            "/send/",
            POSTBUD,
            postbud_settings(fake, spool, BACKGROUND=True),
            args.requests,
        ),
        "django_postbud BACKGROUND, spool in memory": (
            "/send/",
            POSTBUD,
            postbud_settings(fake, None, BACKGROUND=True),
            args.requests,
        ),
    }

    def prepare(name: str) -> None:
        _, backend, postbud, _ = configs[name]
        settings.EMAIL_BACKEND = backend  # directly: see the module docstring
        settings.POSTBUD = postbud
        time.sleep(PAUSE)

    def settle(name: str) -> None:
        """Deliver the burst's queue at full speed, untimed; the server forgets its mail."""
        if configs[name][1] == POSTBUD:
            set_delay(fake, 0)
            assert get_connection().mailer.flush(120)
            set_delay(fake, DELAY)
        fake.command("reset")

    scenarios = {name: (request(path), n) for name, (path, _, _, n) in configs.items()}
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

    django_p99 = added(DJANGO_ROW, 1)
    print(
        f"\n### 2. Request latency of a view that sends one mail, server delaying every "
        f"reply by {DELAY * 1000:.0f} ms\n\n"
        f"Milliseconds, through Django's test client; medians over {args.latency_rounds} "
        f"rounds of each round's p50 and p99 over {args.bursts} bursts; added = over the "
        f"view sending nothing, in the same round.\n"
    )
    print(
        "| scenario | requests/burst | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| added p99 ÷ Django's |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in results.items():
        p50 = statistics.median(v[0] for v in values) / 1000
        p99 = statistics.median(v[1] for v in values) / 1000
        n = configs[name][3]
        if name == BASELINE:
            print(f"| {name} | {n} | {p50:.3f} | {p99:.3f} | – | – | – |")
            continue
        share = added(name, 1) / django_p99
        print(
            f"| {name} | {n} | {p50:.3f} | {p99:.3f} | {added(name, 0):.3f} "
            f"| {added(name, 1):.3f} | {fraction(share)} |"
        )
    share = added("django_postbud BACKGROUND, spool on disk", 1) / django_p99
    verdict = "met" if share <= 1 / 20 else "NOT met"
    print(
        f"\nGoal: BACKGROUND's added p99 ≤ 1/20 of Django's (spool on disk, the guarantee): "
        f"{fraction(share)}, {verdict}."
    )


def fraction(share: float) -> str:
    """0.004 as "1/250" (and 1.0 as "1/1"); what the goal is written in."""
    if share <= 0:
        return "≤ 0"
    return f"1/{1 / share:,.0f}" if share < 1 else f"{share:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    parser.add_argument("--n", type=int, default=300, help="messages per send_messages batch")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds")
    parser.add_argument("--requests", type=int, default=300, help="requests per fast burst")
    parser.add_argument(
        "--blocking-requests",
        type=int,
        default=10,
        help="requests per burst of a blocking backend (each waits for the 50 ms server)",
    )
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--bursts", type=int, default=3, help="bursts per latency round")
    if parser.parse_args().quick:  # smaller defaults; options given still win
        parser.set_defaults(
            n=100, rounds=3, requests=100, blocking_requests=5, latency_rounds=3, bursts=1
        )
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    import django

    previous = os.environ.get("SSL_CERT_FILE")
    with tempfile.TemporaryDirectory() as folder, RemoteFake("ssl") as fake:
        os.environ["SSL_CERT_FILE"] = fake.ca_file  # how a CA reaches Django's backend
        try:
            with django_site(fake, Path(folder) / "spool.sqlite"):
                throughput(args, fake)
                latency(args, fake, Path(folder) / "spool.sqlite")
                from django_postbud._registry import close_all

                close_all()  # before the folder of the spool goes
        finally:
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous
    print(f"\nPython {sys.version.split()[0]}, Django {django.get_version()}.")


if __name__ == "__main__":
    main()
