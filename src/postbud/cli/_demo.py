"""``postbud demo``: the main job against an embedded FakeGmail, no account needed.

It shows a newcomer, in a few seconds, what postbud does and what the server sees:
an app-password login over implicit TLS (port 465 style) and over STARTTLS (port 587
style), both with verified certificates, OAuth2 (XOAUTH2) through a fake token
endpoint, and what a wrong password looks like.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time

from postbud._mailer import Mailer
from postbud.errors import AuthenticationError

from ._common import require_extras

__all__ = ["run_demo"]

#: What the demo imports (module: the package that brings it), by the extra that
#: installs it: checked before anything runs, so one message names all that is missing.
_EXTRAS = {
    "testing": {
        "aiosmtpd": "aiosmtpd",
        "trustme": "trustme",
        "pytest_localserver": "pytest-localserver",
        "werkzeug": "werkzeug",
    },
    "oauth": {"google.auth": "google-auth", "requests": "requests"},
}


def _show_received(fake: object) -> None:
    from postbud.testing import FakeGmail

    assert isinstance(fake, FakeGmail)
    record = fake.messages[-1]
    print("   The server received:")
    print(f"     MAIL FROM:<{record.mail_from}>  (logged in as {record.authenticated_as})")
    print(f"     RCPT TO:  {', '.join(f'<{r}>' for r in record.recipients)}")
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Content-Type"):
        value = record.message.get(name)
        if value is not None:
            print(f"     {name}: {value}")
    body = (record.text or "").splitlines()
    for line in body[:3]:
        print(f"     | {line}")
    print(f"   Commands: {' '.join(fake.commands)}")
    print()


class _Clock:
    """The demo moves time forward instead of waiting ten minutes."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _charge(n: int) -> None:
    raise ConnectionError(f"payment gateway timed out (order {n})")


def _alert_storm(fake: object, spool: str) -> None:
    from postbud.alerts import AlertHandler
    from postbud.testing import FakeGmail

    assert isinstance(fake, FakeGmail)
    print("5. Error alerts with storm control: 1,000 identical errors, then 20 distinct ones")
    print("   log.addHandler(postbud.AlertHandler('oncall@example.com', ...))")
    clock = _Clock()
    mailer = Mailer(fake.settings(spool=spool))
    handler = AlertHandler("oncall@example.com", mailer=mailer, clock=clock)
    log = logging.getLogger("demo.shop")
    log.propagate = False
    log.addHandler(handler)

    def arrived(since: int) -> list[object]:
        handler.tick()
        mailer.flush(10)
        return list(fake.messages[since:])

    def show(messages: list[object], limit: int = 3) -> None:
        for received in messages[:limit]:
            assert hasattr(received, "message")
            m = received.message
            kind, count = m["X-Postbud-Alert"], m["X-Postbud-Count"]
            print(f"     [{kind}, count {count}] {str(m['Subject']).strip()}")
        if len(messages) > limit:
            print(f"     ... and {len(messages) - limit} more like these")

    started = time.perf_counter()
    for n in range(1000):
        try:
            _charge(n)
        except ConnectionError:
            log.exception("payment for order %s failed", n)
    took = time.perf_counter() - started
    print(
        f"   1,000 x log.exception() took {took * 1000:.1f} ms in the app "
        f"({took * 1e6 / 1000:.1f} us each): no network, no disk on the caller's thread."
    )
    got = arrived(0)
    print(f"   Arrived at once: {len(got)} mail")
    show(got)
    clock.now += 601  # alert_cooldown is 600 s: the follow-up is due
    print("   Ten minutes later (the demo moves the clock), the cooldown ends:")
    new = arrived(len(got))
    show(new)
    for n in range(20):
        log.error(f"nightly job #{n} failed")  # 20 different messages: 20 fingerprints
    later = arrived(len(got) + len(new))
    _explain_cap(mailer.settings.alert_cap, len(got) + len(new), len(later), 20)
    show(later)
    log.removeHandler(handler)
    handler.close()  # logging.shutdown() does this at exit: the digest goes out now
    mailer.close()
    digest = fake.messages[-1]
    print("   At close, the rest arrive as one digest (rows by count, then message):")
    show([digest])
    _show_digest_rows(digest.text or "")
    total = sum(int(m["X-Postbud-Count"] or 0) for m in fake.messages)
    print(
        f"   {len(fake.messages)} mails for 1,020 errors, and their counts add up to {total:,}: "
        "nothing was dropped.\n"
    )


def _explain_cap(cap: int, used: int, mailed: int, errors: int) -> None:
    """Why only some of the distinct errors were mailed: the hourly cap counts every
    alert mail of the handler, the first alert and the follow-up included."""
    print(
        f"   {errors} distinct errors: {mailed} mailed at once, then alert_cap is hit.\n"
        f"   alert_cap allows {cap} alert mails an hour; the first alert and the follow-up "
        f"above used {used},\n"
        f"   so {mailed} new errors get a first alert and the other {errors - mailed} wait "
        "for the hour's digest:"
    )


def _natural(text: str) -> list[int | str]:
    """A sort key that puts "job #9" before "job #10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _show_digest_rows(text: str, limit: int = 3) -> None:
    rows = _digest_rows(text)
    for line in rows[: limit + 1]:  # the header, then the rows
        print(f"     | {line}")
    if len(rows) > limit + 1:
        print(f"     | ... and {len(rows) - limit - 1} more rows")


def _digest_rows(text: str) -> list[str]:
    """The digest's table (header first), its rows by count (highest first), then message.

    Rows with equal counts come in no set order from the alert store; sorted here, the
    demo prints the same lines on every run.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Count ")), None)
    if start is None:
        return []
    header = lines[start]
    table = lines[start + 1 :]
    rows = table[: table.index("")] if "" in table else table
    message, where = header.index("Message"), header.index("Where")

    def key(row: str) -> tuple[int, list[int | str]]:
        count = row.split(maxsplit=1)[0]  # "… and N more kind(s)" has a count too
        return (-int(count) if count.isdigit() else 0, _natural(row[message:where].strip()))

    return [header, *sorted(rows, key=key)]


def run_demo() -> int:
    """Run the demo; returns the exit status (0)."""
    require_extras("the demo", _EXTRAS)
    from postbud.testing import FakeGmail

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter
    print("postbud demo: everything below talks to FakeGmail on 127.0.0.1 over real TLS.\n")
    with FakeGmail("ssl") as fake465, FakeGmail("starttls") as fake587:
        for number, (fake, label) in enumerate(
            (
                (fake465, "implicit TLS, like smtp.gmail.com:465"),
                (fake587, "STARTTLS, like smtp.gmail.com:587"),
            ),
            start=1,
        ):
            print(f"{number}. App password over {label}")
            print(
                f"   Mailer(username={fake.username!r}, app_password='****', "
                f"host='127.0.0.1', port={fake.port}, security={fake.mode!r}, "
                "ca_file=<the fake's CA>)"
            )
            with Mailer(fake.settings(spool=None)) as mailer:
                result = mailer.send(
                    to="you@example.com",
                    subject=f"Hello from postbud over {fake.mode}",
                    text="This message went through a verified TLS connection.\n"
                    "The password never crossed the wire in clear.\n",
                    html="<p>This message went through a <b>verified</b> TLS connection.</p>",
                    bcc="audit@example.com",
                )
            print(
                f"   send() -> accepted {', '.join(result.accepted)}; "
                f"Message-ID {result.message_id}"
            )
            _show_received(fake)

        print("3. OAuth2 (SASL XOAUTH2) with a token file, through a fake Google token endpoint")
        from postbud.testing import FakeGoogleTokens

        fake465.reset()
        with FakeGoogleTokens([fake465]) as tokens, tempfile.TemporaryDirectory() as folder:
            token_file = tokens.authorized_user_file(os.path.join(folder, "token.json"))
            print(
                f"   Mailer(username={fake465.username!r}, oauth_token_file='token.json', "
                f"oauth_token_uri={tokens.token_uri!r}, ...)"
            )
            oauth = fake465.settings(
                app_password=None,
                oauth_token_file=str(token_file),
                oauth_token_uri=tokens.token_uri,
                spool=None,
            )
            with Mailer(oauth) as mailer:
                for n in (1, 2):
                    mailer.send("you@example.com", f"OAuth2 message {n}", "Sent with XOAUTH2.\n")
            asked = len(tokens.requests)
            print(
                f"   Two messages sent; the token endpoint was asked "
                f"{'once' if asked == 1 else f'{asked} times'}: the access token is cached "
                "until shortly before it expires."
            )
            _show_received(fake465)

        print("4. A wrong app password: the error says what to do")
        wrong = fake465.settings(app_password="wrongwrongwrongw", spool=None)  # noqa: S106
        with Mailer(wrong) as mailer:
            try:
                mailer.send("you@example.com", "never sent", "x")
            except AuthenticationError as exc:
                print(f"   {type(exc).__name__} (code {exc.code}, retryable={exc.retryable}):")
                print(f"   {exc.description}")
                print(f"   Hint: {exc.hint}")

        fake465.reset()
        with tempfile.TemporaryDirectory() as folder:
            _alert_storm(fake465, os.path.join(folder, "outbox.sqlite"))
    print("\nDone: app passwords and OAuth2 both worked; see README.md for your own account.")
    return 0
