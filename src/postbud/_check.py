"""``diagnose()``: walk the configuration one step at a time and say what to fix.

Settings, the shared state (with ``state="redis://..."``), DNS, TCP, the TLS
certificate, EHLO, the login (for OAuth2 a token refresh first, then XOAUTH2) and the
quota ledger, in the order a connection needs them, so the first failure is the one to
fix. A shared state that does not answer is reported and the walk goes on: the SMTP
steps are worth knowing all the same (the exit code says it failed). The result is a
``CheckReport`` (steps, verdicts, fixes) that ``postbud check`` prints and the Django
and Flask commands can print too. The connection and the login go through
``SMTPTransport.probe()``, so a check fails with the very words a send would. Nothing
secret is reported: not the password (Gmail's or Redis's), not a token, not a line of
the AUTH exchange. The checks send nothing; with ``send_to`` one test message goes out.
Queued mail is never touched (no worker starts); while the account's logins are paused
for these credentials, the login is not tried, and a refused one pauses them.
"""

from __future__ import annotations

import math
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from postbud._address import parse_address
from postbud._auth import AppPassword, Credentials
from postbud._config import Settings
from postbud._message import build_message
from postbud._oauth import MAIL_SCOPE, OAuth2, refresh_error
from postbud._outbox import Outbox, RedisState, StateUnavailable, credential_hash
from postbud._smtp import SMTPTransport, current_route, translate
from postbud.errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    MissingDependencyError,
)

__all__ = ["CheckReport", "CheckStep", "diagnose"]

#: How long a STARTTLS check waits for the greeting before it asks whether the server
#: speaks TLS from the first byte instead (Gmail greets within a fraction of a second).
GREETING_GRACE = 2.0

#: What the fix of a STARTTLS client against an implicit-TLS port says: the sentence
#: ``send()`` ends with when it times out there, so the two name the same fix.
TLS_FIRST_FIX = (
    "A server that speaks TLS from the first byte (port 465) waits silently for a "
    "STARTTLS client: check security='ssl'."
)


class _Failed(Exception):
    def __init__(
        self,
        step: str,
        problem: str,
        fix: str | None,
        code: int = 1,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(problem)
        self.step, self.problem, self.fix, self.code = step, problem, fix, code
        self.error = error


@dataclass(frozen=True)
class CheckStep:
    """One step of a check: its name ("tls"), whether it passed, what was found, the fix.

    Attributes:
        warning: The step passed but found something to look at (an app password that
            does not look like one); the walk goes on.
        error: For a failed step, the exception behind it (``postbud check --debug``
            prints its traceback), or None.
    """

    name: str
    ok: bool
    text: str
    fix: str | None = None
    warning: bool = False
    error: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CheckReport:
    """What ``diagnose()`` found, step by step; it stops at the first failure (but for
    a shared state that does not answer).

    Attributes:
        steps: The steps run, in order. The walk stops at the first failure, but for
            the shared state's ("state"), after which it goes on: so a failed step is
            the last one, or the "state" step, or both.
        exit_code: 0 all passed, 1 a delivery problem (or a shared state that does
            not answer), 2 a configuration mistake.
    """

    steps: tuple[CheckStep, ...]
    exit_code: int

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return self.exit_code == 0

    @property
    def failure(self) -> CheckStep | None:
        """The failed step that decided ``exit_code`` (the last one that failed), or
        None when every step passed. Use it rather than ``steps[-1]``: after a shared
        state that does not answer, the steps that follow it passed."""
        failed = [step for step in self.steps if not step.ok]
        return failed[-1] if failed else None


class _Steps:
    def __init__(self, on_step: Callable[[CheckStep], None] | None) -> None:
        self.done: list[CheckStep] = []
        self._on_step = on_step
        self.code = 0  # of a failed step after which the walk went on

    def add(self, step: CheckStep) -> None:
        self.done.append(step)
        if self._on_step is not None:
            self._on_step(step)

    def ok(self, name: str, text: str) -> None:
        self.add(CheckStep(name, True, text))


def diagnose(
    settings: Settings | Callable[[], Settings],
    send_to: str | None = None,
    *,
    on_step: Callable[[CheckStep], None] | None = None,
) -> CheckReport:
    """Check a configuration step by step, as a connection needs it.

    Args:
        settings: The settings, or a function that builds them (its
            ``ConfigurationError`` becomes the failed "settings" step).
        send_to: Also send a test message to this address (counted in the quota).
        on_step: Called with each step as soon as it is known (to print progress).
    """
    steps = _Steps(on_step)
    load = settings if callable(settings) else (lambda: settings)
    try:
        _steps(steps, load, send_to)
    except _Failed as failed:
        steps.add(CheckStep(failed.step, False, failed.problem, failed.fix, error=failed.error))
        return CheckReport(tuple(steps.done), failed.code)
    return CheckReport(tuple(steps.done), steps.code)


def _steps(steps: _Steps, load: Callable[[], Settings], send_to: str | None) -> None:
    try:
        settings = load()
        credentials = settings.credentials()
        if send_to:
            parse_address(send_to)
    except (ConfigurationError, InvalidMessageError) as exc:
        raise _Failed("settings", str(exc), None, code=2, error=exc) from None
    steps.ok(
        "settings",
        f"{settings.username} via {settings.host}:{settings.port} ({settings.security}), "
        f"{credentials.credential}",
    )
    transport = SMTPTransport(settings, credentials)
    # The account's outbox, without a worker: check reads and records the account's
    # gates (a login pause, a backoff) and the quota, and never touches queued mail.
    try:
        outbox = Outbox.open(
            settings,
            transport=transport,
            credential=credential_hash(settings.username, credentials),
        )
    except MissingDependencyError as exc:  # state="redis://..." without redis-py
        raise _Failed("state", str(exc), None, code=2, error=exc) from None
    try:
        shared = _state(steps, settings, outbox)
        _network(steps, transport)
        _tls_and_ehlo(steps, transport)
        # One rule for the shape (16 letters), kept by Settings; the walk goes on after it.
        shape = (
            settings.app_password_looks_wrong() if isinstance(credentials, AppPassword) else None
        )
        if shape is not None:
            steps.add(CheckStep("password", True, shape, warning=True))
        _login(steps, settings, credentials, transport, outbox, shape)
        _quota(steps, settings, outbox, shared)
        if send_to and not shared:
            # A process that has not reached Redis in the last minute has no share of
            # the daily limit (the ledger fails closed): the send would be refused as
            # if the day's limit were spent, which it is not.
            raise _Failed(
                "send",
                f"not sent to {send_to}: without the shared state this process has no "
                "share of the daily limit (see the state step)",
                "Make the state step pass, then run the check with --send again.",
            )
        if send_to:
            envelope = build_message(
                mail_from=settings.username,
                sender=settings.sender,
                to=send_to,
                subject="postbud check",
                text="This test message was sent by postbud check.\n",
            )
            try:  # counted in the quota ledger like any mail
                result = outbox.send_now(envelope)
            except DeliveryError as exc:
                raise _Failed("send", exc.description, exc.hint, error=exc) from None
            finally:
                transport.close()
            steps.ok("send", f"{send_to} accepted {result.message_id}")
    finally:
        outbox.close(0)


def _network(steps: _Steps, transport: SMTPTransport) -> None:
    settings = transport.settings
    route = current_route()  # FakeGmail.intercept(): check where probe() will connect
    host, port, security = (
        (route.host, route.port, route.security)
        if route is not None
        else (settings.host, settings.port, settings.security)
    )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail("dns", transport, exc)
    steps.ok("dns", f"{host} is {', '.join(sorted({str(i[4][0]) for i in infos}))}")
    try:
        raw = socket.create_connection((host, port), settings.timeout)
    except OSError as exc:
        _fail("tcp", transport, exc)
    with raw:
        steps.ok("tcp", f"connected to {host}:{port}")
        context = route.context if route is not None else transport.ssl_context
        if security == "starttls" and _speaks_tls_first(raw, host, context, settings.timeout):
            raise _Failed(
                "tls",
                f"{settings.host}:{settings.port} speaks TLS from the first byte (like port "
                "465): it sent no greeting and answered a TLS handshake, so with "
                f"security='starttls' a send waits out its {settings.timeout:g} s deadline.",
                TLS_FIRST_FIX,
            )


def _speaks_tls_first(
    raw: socket.socket, host: str, context: ssl.SSLContext, timeout: float
) -> bool:
    """Whether the server on ``raw``, silent once connected, answers a TLS handshake.

    A STARTTLS client on an implicit-TLS port waits for a greeting while the server waits
    for a ClientHello: neither speaks until the deadline, after which ``send()`` can only
    guess. Once the greeting is late, the check asks directly. Nothing is sent over the
    handshake, so nothing can leak; a plain SMTP server that greets late reads the
    ClientHello as a bad command, which is harmless, and the walk goes on.
    """
    grace = min(GREETING_GRACE, timeout / 4)
    raw.settimeout(grace)
    try:
        raw.recv(1)  # a greeting, or a close that probe() reports in send()'s words
        return False
    except TimeoutError:
        pass  # silent: a late greeting, or a server waiting for a ClientHello
    except OSError:
        return False
    try:
        with context.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False) as tls:
            tls.settimeout(grace)
            tls.do_handshake()
    except ssl.SSLCertVerificationError:
        return True  # it sent a certificate: TLS first (trust is the next question)
    except OSError:  # ssl.SSLError, a timeout, a reset: no TLS server, or no answer
        return False
    return True


def _fail(step: str, transport: SMTPTransport, exc: Exception) -> NoReturn:
    """Stop at ``step`` with the transport's own words for a connect error ``exc``."""
    error = translate(exc, "connect", transport.settings, transport.credentials)
    raise _Failed(step, error.description, getattr(error, "hint", None), error=exc) from None


def _tls_and_ehlo(steps: _Steps, transport: SMTPTransport) -> None:
    """TLS and EHLO as a send does them (``probe`` without the login): the same errors."""
    try:
        found = transport.probe(login=False)
    except DeliveryError as exc:
        step = "ehlo" if isinstance(exc.__cause__, smtplib.SMTPHeloError) else "tls"
        raise _Failed(step, exc.description, exc.hint, error=exc) from None
    steps.ok("tls", f"{found.tls_version}, certificate of {found.peer} is trusted")
    steps.ok("ehlo", f"{found.greeting}; AUTH {' '.join(found.auth) or 'none'}")


def _login(
    steps: _Steps,
    settings: Settings,
    credentials: Credentials,
    transport: SMTPTransport,
    outbox: Outbox,
    shape: str | None,
) -> None:
    pause = outbox.gates.login_pause(time.time(), refused_only=True)
    if pause is not None:  # the same credentials again: Gmail locks such accounts
        raise _Failed(
            "login",
            f"not tried: {outbox.gates.describe(pause)}",
            "Correct the password (or token), then run 'postbud outbox retry' to send what waits.",
        )
    if isinstance(credentials, OAuth2):
        try:
            credentials.token(timeout=settings.timeout)  # never printed
        except Exception as exc:
            error = refresh_error(exc, credentials.token_uri)
            if error is None:
                raise
            fix = error.hint
            if settings.service_account_file and "unauthorized_client" in error.description:
                fix = _delegation_fix(settings.service_account_file, settings.username)
            raise _Failed("token", error.description, fix, error=error) from None
        steps.ok("token", "the token endpoint gave an access token")

    try:
        transport.probe(login=True)
    except DeliveryError as exc:
        outbox.gates.failed(exc, time.time(), warn=False)  # every process then knows
        fix = exc.hint
        if shape is not None and isinstance(exc, AuthenticationError) and exc.code == 535:
            fix = f"{shape} {fix}" if fix else shape  # the likely reason first
        raise _Failed("login", exc.description, fix, error=exc) from None
    outbox.gates.succeeded()
    steps.ok("login", f"logged in as {settings.username} with the {credentials.credential}")


def _delegation_fix(key_file: str, username: str) -> str:
    """The admin-console step for a service account whose token request Google refused
    with ``unauthorized_client``, with the client ID to paste (read from the key)."""
    import json

    try:
        with open(key_file, encoding="utf-8") as fh:
            key = json.load(fh)
        client_id, email = str(key["client_id"]), str(key.get("client_email", ""))
    except (OSError, ValueError, KeyError, TypeError):
        client_id, email = "of the service account", ""
    of = f" ({email})" if email else ""
    return (
        "Domain-wide delegation is not set up for this service account: a super admin of "
        f"{username.rpartition('@')[2]} opens the Google Admin console, Security, Access and "
        "data control, API controls, Domain-wide delegation, Add new, with the client ID "
        f"{client_id}{of} and the OAuth scope {MAIL_SCOPE}. It can take minutes (rarely "
        f"24 h) to apply; {username} must be a user of that Workspace domain."
    )


def _state(steps: _Steps, settings: Settings, outbox: Outbox) -> bool:
    """The shared state on Redis: whether it answers, how fast, what it holds for the
    account. Not answering is a failed step the walk goes on after (exit code 1);
    False then, so the quota step does not report a count it could not read."""
    store = outbox.ledger.state
    if settings.state is None or not isinstance(store, RedisState):
        return True  # the spool's, or memory: nothing apart to reach
    url = settings.state
    store.heartbeat = False  # a check is not a sender: the fleet's shares stay as they are
    try:
        store.ping()  # connects and logs in
        latency = store.ping()  # one round trip
    except StateUnavailable as exc:
        steps.add(_state_failure(settings, str(exc)))
        steps.code = steps.code or 1
        return False
    now = time.time()
    used, alerts, _ = store.used(settings.username, now)
    of_them = f" ({alerts} of them alerts)" if alerts else ""
    text = (
        f"{url} answers in {latency * 1000:.1f} ms; {used} recipient(s){of_them} counted "
        f"for {settings.username} in the last 24 h, by every machine that shares it"
    )
    held = _gates_held(store, outbox, now)
    if held:
        text += "; it holds " + "; ".join(held)
    steps.add(CheckStep("state", True, text, warning=bool(held)))
    return True


def _state_failure(settings: Settings, reason: str) -> CheckStep:
    """The failed "state" step for ``reason`` (``StateUnavailable``'s text, which never
    holds the password)."""
    url = settings.state
    # The store's own advice, said in the fix instead.
    reason = reason.removesuffix("; check the password in state or POSTBUD_STATE_PASSWORD")
    lowered = reason.lower()
    after = (
        "Until it answers, every process keeps the gates itself and sends only its share "
        "of the daily limit as of its last contact with Redis (none after a minute): mail "
        "waits in the spool."
    )
    if any(word in lowered for word in ("noauth", "wrongpass", "password", "authentication")):
        if settings.state_password is None:
            problem = f"{url} wants a password, and none is set ({reason})"
            fix = (
                "Set POSTBUD_STATE_PASSWORD to the Redis password (requirepass or the ACL user's)."
            )
        else:
            problem = f"{url} refused the password ({reason})"
            fix = (
                "Check the password: the one in the state URL, else POSTBUD_STATE_PASSWORD "
                "(the URL's wins), and the user name in the URL if Redis has ACL users."
            )
    else:
        problem = f"{url} does not answer ({reason})"
        fix = (
            "Check that Redis runs there and that this machine reaches it (host, port, "
            "firewall; rediss:// for a server that speaks TLS)."
        )
    return CheckStep("state", False, problem, f"{fix} {after}")


def _gates_held(store: RedisState, outbox: Outbox, now: float) -> list[str]:
    """What the store holds for the account now: a login pause, a connection backoff,
    Gmail's daily-limit hold (read as they are: nothing is claimed or cleared)."""
    held = []

    def at(moment: float) -> str:
        return datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")

    gates = outbox.gates
    # Only what stops these credentials and this TLS set-up (a pause of credentials
    # since replaced stops nobody who uses the new ones).
    login = store.gate(gates.login)
    if login is not None and login.holds(now, gates.credential):
        if math.isinf(login.until):  # a refused login: until the credentials change
            held.append(f"a login pause since {at(login.since)} ({login.reason})")
        else:
            held.append(f"logins waiting until {at(login.until)} ({login.reason})")
    connect = store.gate(gates.connect)
    if connect is not None and connect.holds(now, gates.tls):
        held.append(f"connections waiting until {at(connect.until)} ({connect.reason})")
    hold = outbox.ledger.held_until(now)
    if hold is not None and hold > now:
        held.append(f"the daily-limit hold until {at(hold)}")
    return held


def _quota(steps: _Steps, settings: Settings, outbox: Outbox, shared: bool = True) -> None:
    if not shared:
        steps.add(
            CheckStep(
                "quota",
                True,
                "not counted: the shared state does not answer (see the state step)",
                warning=True,
            )
        )
        return
    now = time.time()
    status = outbox.status()  # reads the ledger; sends nothing
    quota = f"{status.quota_used} of {settings.daily_limit} recipients used in the last 24 h"
    if status.held_until is not None:
        raise _Failed(
            "quota",
            quota + f"; held for {status.held_until - now:.0f} s after Gmail's daily-limit reply.",
            "Nothing is lost: queued mail goes out when the hold ends.",
        )
    if settings.state is not None:
        where = f" (shared state {settings.state})"
    else:
        where = f" (spool {status.spool})" if status.spool else " (no spool)"
    steps.ok("quota", quota + where)
