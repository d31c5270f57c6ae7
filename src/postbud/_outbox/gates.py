"""The waits of one account that every process respects: the login pause and the
connection backoff.

A refused login (535, 534, a revoked token) pauses the account's logins until the
credentials change: the gate keeps a hash of the refused credential, so new ones try
once, and the same ones never log in again (Gmail locks accounts that keep failing).
A throttled login (454) waits its ``retry_after``. A failed connection (refused,
reset, closed before the greeting, a timeout) backs off the account's endpoint
(host and port), 1 s × 2ⁿ up to ``connect_max``, for every row at once: an outage
costs a handful of attempts, not one per queued message. A TLS failure (an untrusted
certificate, a handshake refused) waits the whole ``connect_max`` with one warning:
refusing to send is right, losing the queue is not.

The gates live in the ``StateStore`` (the spool: every process on it sees them);
when the store fails, this process keeps them itself. When a gate ends, one process
claims the next attempt, so a fleet on one spool probes once, not once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from datetime import datetime

from postbud._config import Settings
from postbud.errors import AuthenticationError, DeliveryError, TransportError

from .retry import DEFAULT_POLICY, RetryPolicy
from .state import Gate, MemoryState, StateStore, StateUnavailable, connect_gate, login_gate

__all__ = ["Gates", "credential_hash"]

log = logging.getLogger("postbud")


def credential_hash(username: str, credentials: object) -> str | None:
    """A hash of the long-lived part of ``credentials`` (their ``identity()``: the
    normalised app password, the refresh token and client id...), or None when they
    do not say. Never the secret itself; only the hash is stored."""
    identity = getattr(credentials, "identity", None)
    return _hash(username, identity()) if callable(identity) else None


def _hash(username: str, text: str) -> str:
    data = f"postbud-login\0{username.lower()}\0{text}".encode()
    return hashlib.sha256(data).hexdigest()[:32]


def when(at: float) -> str:
    """A time for a user's eyes (local time, to the second)."""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


class Gates:
    """The login pause and the connection backoff of one account's outbox."""

    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        credential: str | None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.account = settings.username.lower()
        self.state = state
        self.credential = credential
        self.policy = policy
        self.login = login_gate(self.account)
        self.connect = connect_gate(self.account, settings.host, settings.port)
        # A TLS failure stops this TLS set-up only: a corrected ca_file tries at once.
        self.tls = _hash(self.account, f"{settings.host}\0{settings.security}\0{settings.ca_file}")
        self._local = MemoryState()  # what the store could not take
        self._seen: set[str] = set()  # gates read or set: a success clears them
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------

    def get(self, name: str) -> Gate | None:
        try:
            gate = self.state.gate(name)
        except StateUnavailable:
            gate = None
        local = self._local.gate(name)
        if local is not None and local.until <= time.time():
            self._local.clear_gate(name)  # kept here only while the store failed: over
            local = None
        if local is not None and (gate is None or local.until > gate.until):
            gate = local
        if gate is not None:
            self._seen.add(name)
        return gate

    def login_pause(self, now: float, *, refused_only: bool = False) -> Gate | None:
        """The login pause that stops this outbox's credentials now, or None.

        ``refused_only``: only a refused login's pause (a blocking send still makes its
        one attempt while a throttled login waits, as it does during a backoff).
        """
        gate = self.get(self.login)
        if gate is None or not gate.holds(now, self.credential):
            return None
        return gate if not refused_only or math.isinf(gate.until) else None

    def blocked(self, now: float) -> Gate | None:
        """What stops the worker from trying now (a login pause or a backoff), or None.

        When the connection backoff has just ended, this process claims the next
        attempt (the others wait one more step), so only one process probes.
        """
        pause = self.login_pause(now)
        if pause is not None:
            return pause
        gate = self.get(self.connect)
        if gate is None:
            return None
        if gate.holds(now, self.tls):
            return gate
        if gate.until > now:  # a TLS failure of another set-up: not ours to wait for
            return None
        claimed = Gate(
            now + self._step(gate.step + 1), gate.since, gate.step, gate.reason, gate.credential
        )
        try:
            if not self.state.claim(self.connect, gate.until, claimed):
                return self.get(self.connect)  # another process probes
        except StateUnavailable:
            pass
        return None

    def describe(self, gate: Gate) -> str:
        """One line about ``gate`` for ``postbud check``, ``status`` and errors."""
        if math.isinf(gate.until):
            return (
                f"logins for {self.account} are paused since {when(gate.since)}: Gmail "
                f"refused them ({gate.reason}); correct the password or token, then run "
                "'postbud outbox retry'"
            )
        what = "logins" if gate == self.get(self.login) else "connections"
        return (
            f"{what} for {self.account} wait until {when(gate.until)} after "
            f"{gate.step} failure(s) since {when(gate.since)} ({gate.reason})"
        )

    # -- what happened ----------------------------------------------------------------

    def failed(self, exc: DeliveryError, now: float, *, warn: bool = True) -> Gate | None:
        """Record a failed login or connection; the gate it set, or None for other
        failures (a refused recipient, a message too big: the row's business).
        ``warn=False``: the caller raises the error itself (a blocking send)."""
        if not warn:
            self._warned.update(("login", "connect", "tls"))
        if isinstance(exc, AuthenticationError):
            if exc.retryable:  # throttled (454), the token endpoint down: wait, growing
                old = self.get(self.login)
                step = old.step + 1 if old is not None and not old.needs_user else 1
                since = old.since if old is not None and not old.needs_user else now
                delay = max(exc.retry_after or 0.0, self._step(step))
                gate = Gate(now + delay, since, step, exc.description)
            else:
                gate = Gate(math.inf, now, 1, exc.description, self.credential)
                self._warn(
                    "login",
                    f"postbud pauses logins for {self.account}: Gmail refused the login "
                    f"({exc.description}). Queued mail waits (until max_age); correct "
                    "the credentials, then run 'postbud outbox retry'.",
                )
            self._set(self.login, gate)
            return gate
        if not isinstance(exc, TransportError):
            return None
        old = self.get(self.connect)
        step = (old.step if old is not None else 0) + 1
        since = old.since if old is not None else now
        if exc.retryable:
            gate = Gate(now + self._step(step), since, step, exc.description)
            if step == 3:
                self._warn(
                    "connect",
                    f"postbud cannot connect for {self.account} ({exc.description}); "
                    "queued mail waits and is retried with a growing backoff.",
                )
        else:  # TLS refused or untrusted: a set-up problem, not an outage
            gate = Gate(now + self.policy.connect_max, since, step, exc.description, self.tls)
            self._warn(
                "tls",
                f"postbud will not send for {self.account}: {exc}. Queued mail waits "
                f"and is tried again every {self.policy.connect_max:.0f} s; fix the "
                "TLS set-up (ca_file, host, security).",
            )
        self._set(self.connect, gate)
        return gate

    def succeeded(self) -> None:
        """A login and a connection worked: the gates this process saw are over."""
        if not self._seen:
            return
        with self._lock:
            seen, self._seen = self._seen, set()
        for name in seen:
            # Only a gate about nobody in particular, or about these credentials or this
            # TLS set-up: another process may still hold refused credentials.
            ours = self.credential if name == self.login else self.tls
            gate = self.get(name)
            if gate is None or gate.credential in (None, ours):
                self._clear(name)
        self._seen.clear()
        self._warned.clear()

    def clear(self) -> None:
        """``postbud outbox retry``: the user fixed something; try again now."""
        for name in (self.login, self.connect):
            self._clear(name)
        self._warned.clear()

    # -- plumbing ---------------------------------------------------------------------

    def _step(self, step: int) -> float:
        policy = self.policy
        exponent = min(max(step - 1, 0), 30)  # a long outage must not overflow the float
        return float(min(policy.connect_max, policy.connect_base * 2.0**exponent))

    def _set(self, name: str, gate: Gate) -> None:
        self._seen.add(name)
        try:
            self.state.set_gate(name, gate)
            self._local.clear_gate(name)
        except StateUnavailable:
            self._local.set_gate(name, gate)

    def _clear(self, name: str) -> None:
        self._local.clear_gate(name)
        with contextlib.suppress(StateUnavailable):
            self.state.clear_gate(name)

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
