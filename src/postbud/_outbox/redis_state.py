"""The shared state on Redis: one quota ledger and one set of gates for a fleet.

A site on several machines has one Gmail account and one daily limit, but one spool
per machine: ``state="redis://host:6379/0"`` puts the ledger and the gates (the login
pause, the connection backoff, the 550 hold) where every process on every host sees
them. ``RedisState`` is the ``StateStore`` protocol on Redis; nothing else in postbud
knows which store it talks to.

On the server. The keys of an account are ``postbud:{account}:...`` (the braces are
a Redis Cluster hash tag: one slot per account): ``ledger`` (a sorted set of entries
scored by the time they were accepted), ``totals`` (a hash: recipients and alert
recipients in the set, so a read is O(1) plus the few entries that just left the
window), ``live`` (a sorted set: one heartbeat per process, scored by its last call),
``epoch`` (a token that tells a Redis that lost its data) and ``gate:<name>``. Every
read-modify-write is one Lua script, atomic on the server. The ledger keys expire a
day and an hour after the last write (by then every entry left the window); a gate
expires a day after it ends (its step still feeds the next backoff), a login pause
after 30 days. Entry names are unique per process (``recipients:alert:process:n``), so
adding one again is a no-op: what this process recorded while Redis was away is merged
when it is back, and after a Redis that lost its data (a restart without persistence)
each process adds its own entries of the last 24 h again, none twice.

Deadlines. Every call has its own short deadline (``DEADLINE``, for connecting and for
each reply), never the SMTP ``timeout``: a request thread must not hang on Redis.
redis-py does not retry. After a failure a circuit breaker opens: for ``BREAK``
seconds no call is tried and every one fails at once. One warning per outage on the
``postbud`` logger (and one line at INFO when Redis answers again), none per call. No
error text holds the password.

When Redis is unreachable:

- Gates: ``gate()`` answers what this process last read or wrote; ``set_gate``,
  ``clear_gate`` and ``claim`` raise ``StateUnavailable`` and the callers keep the gate
  in this process (``Gates``, ``Ledger``), as with a spool that fails.
- The ledger fails closed (it never raises: the callers' fallback counts only this
  process, which would spend the fleet's whole day blind). Each process may use its
  *local share*: what was left of the daily limit at its last sync, divided by the live
  processes (heartbeats of the last ``LIVE_TTL`` seconds) at that sync, whole
  recipients, rounded down; for ordinary mail, of what was left under the ordinary cap
  (the alert reserve is kept once for the fleet). ``reserve`` reports ``cap - share +
  spent`` (spent: recorded by this process since that sync). A sync older than
  ``LIVE_TTL`` (the others stopped counting this process), or none at all (started
  during the outage), gives ordinary mail no share and alerts this process's part of
  the alert reserve (``alert_reserve * daily_limit // live``) for the whole outage: the
  alerts fail open, within a bound. The oldest entry is reported so that
  ``retry_after`` is about ``RETRY_SOON`` seconds, when Redis may be back; ``blind``
  tells the ledger that its counts are a share, for its messages.
- After Redis lost its data (a new ``epoch``), this process re-adds its own entries
  and, for ``LIVE_TTL`` seconds (until every live process has re-added its own),
  still counts against the share of its last sync before the loss.

What this does not cover (documented, not hidden): a share is computed from this
process's *last* sync, so what other processes sent between that sync and the outage
is not in it. A process syncs before and after every send, so that is what the others
had in flight at that moment; shares are rounded down, which usually absorbs it. A
crash between a send and its record loses that count (the record is a separate Redis
call: a spool transaction, ``txn``, cannot include it), and a host's clock decides
when its entries leave the window (keep clocks synchronised). A process that starts
during a Redis restart without persistence sees an empty ledger until the others
re-add theirs; production Redis should run with AOF (``appendonly yes``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from postbud import _fork
from postbud._config import Settings
from postbud.errors import MissingDependencyError

from .state import WINDOW, Gate, Reserved, StateUnavailable

__all__ = ["BREAK", "DEADLINE", "LIVE_TTL", "RedisState"]

log = logging.getLogger("postbud")

#: Seconds for connecting to Redis and for each of its replies.
DEADLINE = 0.5
#: Seconds after a failure during which no call is tried (the circuit breaker).
BREAK = 3.0
#: Seconds a heartbeat counts a process as live (and a sync stays good for a share).
LIVE_TTL = 60.0
#: About when a send refused for want of a share during an outage is tried again.
RETRY_SOON = 5.0
_LEDGER_KEEP = int(WINDOW) + 3600
_GATE_KEEP = 86400
_SETTLED_KEPT = 10_000  # corrections remembered, so that one is never added twice
_PAUSE_KEEP = 30 * 86400

# KEYS: ledger, totals, live, epoch. ARGV: now, window, live ttl, process ('' for no
# heartbeat), new epoch,
# keep, then a reservation (member, recipients, alert, cap; member '' for none), then
# (member, at, recipients, alert) per entry to add (idempotent: ZADD NX). Recipients
# may be negative: a correction of a reservation, at its time. Returns the totals (with
# the reservation), the oldest entry, the live processes, the epoch, whether the
# reservation was granted and the count before it.
_LEDGER = """
local now = tonumber(ARGV[1])
local since = now - tonumber(ARGV[2])
local keep = tonumber(ARGV[6])
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[4], epoch)
end
-- The epoch outlives the ledger (30 times): after a quiet day the ledger's keys
-- expire, the epoch stays, and nobody mistakes the quiet for a lost ledger.
redis.call('EXPIRE', KEYS[4], keep * 30)
-- Heartbeats by the server's clock: a host whose clock runs ahead must not prune the
-- others from the live set (the ledger's entries keep their writer's time).
local clock = redis.call('TIME')
local beat = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], beat, ARGV[4]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', beat - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3])))
local function add(member, at, n, alert)
  if tonumber(at) > since and redis.call('ZADD', KEYS[1], 'NX', at, member) == 1 then
    redis.call('HINCRBY', KEYS[2], 'recipients', n)
    if alert == '1' then redis.call('HINCRBY', KEYS[2], 'alerts', n) end
  end
end
for i = 11, #ARGV, 4 do
  add(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3])
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', since)) do
  local n, a = string.match(m, '^(-?%d+):(%d)')
  redis.call('HINCRBY', KEYS[2], 'recipients', -tonumber(n))
  if a == '1' then redis.call('HINCRBY', KEYS[2], 'alerts', -tonumber(n)) end
  redis.call('ZREM', KEYS[1], m)
end
local before = tonumber(redis.call('HGET', KEYS[2], 'recipients') or '0')
local granted = 0
if ARGV[7] ~= '' and before + tonumber(ARGV[8]) <= tonumber(ARGV[10]) then
  add(ARGV[7], ARGV[1], tonumber(ARGV[8]), ARGV[9])
  granted = 1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
else
  redis.call('DEL', KEYS[2])
end
local totals = redis.call('HMGET', KEYS[2], 'recipients', 'alerts')
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {totals[1] or '0', totals[2] or '0', oldest[2] or '', redis.call('ZCARD', KEYS[3]), epoch,
  granted, tostring(before)}
"""
# KEYS: the gate. ARGV: until, since, step, reason, credential ('' for none), expire at,
# then for a claim the ``until`` the gate must still have (as written: exact).
_SET_GATE = """
if ARGV[7] and redis.call('HGET', KEYS[1], 'until') ~= ARGV[7] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'until', ARGV[1], 'since', ARGV[2], 'step', ARGV[3],
  'reason', ARGV[4], 'credential', ARGV[5])
redis.call('EXPIREAT', KEYS[1], ARGV[6])
return 1
"""


def _redis() -> Any:
    """redis-py, imported when a Redis store is first built (``import postbud`` stays light)."""
    try:
        import redis
        import redis.backoff
        import redis.retry
    except ImportError as exc:
        raise MissingDependencyError(
            "state='redis://...' needs redis-py: pip install 'postbud[redis]'",
            package=exc.name,
        ) from None
    return redis


@dataclass
class _View:
    """What this process knows of one account's ledger, for when Redis is away."""

    remaining: int = 0  # daily_limit minus the fleet's count, at the last sync
    alerts: int = 0
    oldest: float | None = None
    live: int = 1
    synced: float = -math.inf  # time.time() of the last sync
    spent: int = 0  # recorded by this process since that sync
    spent_alerts: int = 0
    epoch: str | None = None
    frozen_until: float = 0.0  # after a data loss: count against the old sync until then
    entries: deque[tuple[str, float, int, bool]] = field(default_factory=deque)
    settled: dict[str, None] = field(default_factory=dict)  # corrections added, newest last
    pending: dict[str, tuple[float, int, bool]] = field(default_factory=dict)


class RedisState:
    """Gates and the quota ledger on a Redis server (``settings.state``).

    Raises ``MissingDependencyError`` when redis-py is not installed. Nothing connects
    here: the first call does.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.state is not None, "RedisState needs settings.state"
        redis = _redis()
        self.url = settings.state  # without its password (Settings keeps it apart)
        self.limit = settings.daily_limit
        self.alert_reserve = settings.alert_reserve
        password = settings.state_password
        tls: dict[str, Any] = {}
        if self.url.startswith("rediss://"):  # always verified; ca_file if given
            tls = {
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,  # redis-py < 6 does not check it by default
                "ssl_ca_certs": settings.ca_file,
            }
        self._client = redis.Redis.from_url(
            self.url,
            password=password.reveal() if password is not None else None,
            socket_timeout=DEADLINE,
            socket_connect_timeout=DEADLINE,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            protocol=2,
            decode_responses=True,
            **tls,
        )
        self._password = password.reveal() if password else None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._ledger = self._client.register_script(_LEDGER)
        self._set_gate = self._client.register_script(_SET_GATE)
        self._lock = threading.Lock()
        self._down_until = 0.0  # time.monotonic() before which no call is tried
        self._outage: str | None = None  # why Redis is away, while it is
        self._views: dict[str, _View] = {}
        #: Whether this process counts as a live sender (a heartbeat at every sync):
        #: ``postbud check`` reads without taking a share from the others.
        self.heartbeat = True
        self._gates: dict[str, Gate | None] = {}  # as last read or written
        self._after_fork()
        _fork.register(self)

    def _after_fork(self) -> None:
        # A child is another process: its own heartbeat, its own entry names.
        self._lock = threading.Lock()
        self.process = uuid.uuid4().hex[:16]
        self._seq = 0

    def close(self) -> None:
        """Close the connections now (the next call opens one again)."""
        self._client.close()

    @property
    def blind(self) -> bool:
        """Whether the ledger's counts are this process's share, not the fleet's: Redis
        is unreachable (the ledger's messages then say so instead of a count)."""
        return self._outage is not None

    # -- for the other users of the store (alerts, postbud check) -------------------

    @property
    def client(self) -> Any:
        """The redis-py client (decoded replies, the short deadlines)."""
        return self._client

    def call(self, do: Callable[[], Any]) -> Any:
        """Run ``do`` (Redis calls on ``client``) under the deadlines and the circuit
        breaker; any Redis or socket error becomes ``StateUnavailable`` (one warning
        per outage, the password never in its text)."""
        return self._call(do)

    def key(self, account: str, what: str) -> str:
        """The key ``what`` of ``account``: ``postbud:{account}:what`` (one Redis
        Cluster slot per account)."""
        return self._key(account, what)

    def ping(self) -> float:
        """Seconds one PING took; ``StateUnavailable`` (with why) when Redis does not
        answer within the deadline."""
        start = time.perf_counter()
        self._call(self._client.ping)
        return time.perf_counter() - start

    # -- gates ------------------------------------------------------------------------

    def gate(self, name: str) -> Gate | None:
        try:
            fields = self._call(lambda: self._client.hgetall(self._gate_key(name)))
        except StateUnavailable:
            return self._gates.get(name)  # what this process last knew
        gate = _gate(fields) if fields else None
        self._gates[name] = gate
        return gate

    def set_gate(self, name: str, gate: Gate) -> None:
        self._write_gate(name, gate, None)

    def clear_gate(self, name: str, txn: object | None = None) -> None:
        # ``txn`` (a spool transaction) cannot include a Redis call: ignored.
        self._call(lambda: self._client.delete(self._gate_key(name)))
        self._gates[name] = None

    def claim(self, name: str, until: float, gate: Gate) -> bool:
        return self._write_gate(name, gate, repr(until))

    def _write_gate(self, name: str, gate: Gate, expected: str | None) -> bool:
        keep = _PAUSE_KEEP if math.isinf(gate.until) else _GATE_KEEP
        end = time.time() if math.isinf(gate.until) else max(gate.until, time.time())
        args = [
            repr(gate.until),
            repr(gate.since),
            gate.step,
            gate.reason,
            gate.credential or "",
            math.ceil(end + keep),
        ] + ([expected] if expected is not None else [])
        done = self._call(lambda: self._set_gate(keys=[self._gate_key(name)], args=args))
        if done:
            self._gates[name] = gate
        return bool(done)

    # -- the ledger -------------------------------------------------------------------

    def used(self, account: str, now: float) -> tuple[int, int, float | None]:
        view = self._view(account)
        try:
            return self._sync(account, view, now)[:3]
        except StateUnavailable:
            return self._share(view, now)

    def reserve(self, account: str, recipients: int, alert: bool, cap: int, now: float) -> Reserved:
        view = self._view(account)
        member = self._member(recipients, alert)
        tried = False
        if now >= view.frozen_until:
            try:
                tried = True
                _, _, oldest, granted, before = self._sync(
                    account, view, now, (member, recipients, alert, cap)
                )
            except StateUnavailable:
                pass
            else:
                if not granted:
                    return Reserved(None, before, oldest, now, recipients, alert)
                if now < view.frozen_until:  # this sync found a data loss: the share too
                    used, _, oldest = self._share_for(view, now, cap)
                    if used + recipients > cap:
                        self._undo(account, recipients, alert, now)
                        return Reserved(None, used, oldest, now, recipients, alert)
                    before = used
                with self._lock:
                    view.entries.append((member, now, recipients, alert))
                    if now < view.frozen_until:
                        view.spent += recipients
                        view.spent_alerts += recipients if alert else 0
                return Reserved(member, before, oldest, now, recipients, alert)
        # Unreachable, or re-seeding after a data loss: within this process's share,
        # counted here and merged when Redis is back.
        used, _, oldest = self._share_for(view, now, cap)
        if used + recipients > cap:
            if tried:  # the script may have granted it before its answer was lost: the
                # entry and its correction, merged later, cancel out either way
                self._add(view, member, recipients, alert, now)
                self._add(view, self._member(-recipients, alert), -recipients, alert, now)
            return Reserved(None, used, oldest, now, recipients, alert)
        self._add(view, member, recipients, alert, now)
        return Reserved(member, used, oldest, now, recipients, alert)

    def _undo(self, account: str, recipients: int, alert: bool, now: float) -> None:
        """Take back a reservation just granted on the server (a correction entry); if
        Redis fails now, the fleet over-counts it, the safe side."""
        correction = {self._member(-recipients, alert): (now, -recipients, alert)}
        with contextlib.suppress(StateUnavailable):
            self._run_ledger(account, now, correction)

    def settle(
        self,
        account: str,
        reserved: Reserved,
        accepted: int,
        txn: object | None = None,
    ) -> None:
        # A correction entry at the reservation's time: both leave the window together.
        # Named after the reservation, so settling it again (the worker retries a spool
        # commit that failed; this call is outside it) adds nothing: ZADD NX.
        if not reserved.granted or accepted == reserved.recipients:
            return
        change = accepted - reserved.recipients
        member = f"{change}:{int(reserved.alert)}:{reserved.entry}:settled"
        view = self._view(account)
        with self._lock:
            if member in view.settled:
                return
            view.settled[member] = None
            while len(view.settled) > _SETTLED_KEPT:  # the oldest first (dict order)
                del view.settled[next(iter(view.settled))]
        self._add(view, member, change, reserved.alert, reserved.at)
        with contextlib.suppress(StateUnavailable):
            self._sync(account, view, time.time())

    def record(
        self,
        account: str,
        recipients: int,
        alert: bool,
        now: float,
        txn: object | None = None,
    ) -> None:
        # ``txn`` is ignored: the worker's spool commit and this call are two steps
        # (the window is in the module docstring).
        view = self._view(account)
        self._add(view, self._member(recipients, alert), recipients, alert, now)
        # Unreachable: counted against this process's share, merged when Redis is back.
        with contextlib.suppress(StateUnavailable):
            self._sync(account, view, now)

    def _member(self, recipients: int, alert: bool) -> str:
        """A ledger entry's name: unique to this process, its count first (the script
        reads it when the entry leaves the window)."""
        with self._lock:
            self._seq += 1
            return f"{recipients}:{int(alert)}:{self.process}:{self._seq}"

    def _add(self, view: _View, member: str, recipients: int, alert: bool, at: float) -> None:
        """Keep an entry for the next sync (and for a re-seed after a data loss)."""
        with self._lock:
            view.entries.append((member, at, recipients, alert))
            while view.entries and view.entries[0][1] <= at - WINDOW:
                view.entries.popleft()
            view.pending[member] = (at, recipients, alert)
            view.spent += recipients
            view.spent_alerts += recipients if alert else 0

    def _sync(
        self,
        account: str,
        view: _View,
        now: float,
        reservation: tuple[str, int, bool, int] | None = None,
    ) -> tuple[int, int, float | None, bool, int]:
        """Merge what waits, read the count, take a snapshot for an outage; with a
        ``reservation`` (member, recipients, alert, cap), count it if it fits. Returns
        (recipients, alert recipients, oldest, granted, recipients before it)."""
        with self._lock:
            pending = dict(view.pending)
        total, alerts, oldest, live, epoch, granted, before = self._run_ledger(
            account, now, pending, reservation
        )
        recent = now - view.synced < _LEDGER_KEEP  # else the keys expired of themselves
        if view.epoch is not None and epoch != view.epoch and recent:
            # Redis lost this account's keys: add ours again, and keep counting against
            # the sync before the loss until every live process has added its own.
            log.warning(
                "postbud's shared state at %s lost the quota ledger of %s (a restart "
                "without persistence?); this process adds its own last 24 h again and "
                "stays within its share for %.0f s.",
                self.url,
                account,
                LIVE_TTL,
            )
            with self._lock:
                pending = {m: (at, n, a) for m, at, n, a in view.entries}
                view.frozen_until = now + LIVE_TTL
            total, alerts, oldest, live, epoch, _, _ = self._run_ledger(account, now, pending)
        with self._lock:
            for member in pending:
                view.pending.pop(member, None)
            view.epoch = epoch
            if now < view.frozen_until:
                frozen = True
            else:
                frozen = False
                view.remaining = max(0, self.limit - total)
                view.alerts, view.oldest, view.live = alerts, oldest, max(1, live)
                # Entries another thread recorded meanwhile are not in this count yet.
                later = view.pending.values()
                view.synced = now
                while view.entries and view.entries[0][1] <= now - WINDOW:
                    view.entries.popleft()  # what a re-seed would add again: 24 h only
                view.spent = sum(n for _, n, _ in later)
                view.spent_alerts = sum(n for _, n, a in later if a)
        if frozen:
            return (*self._share(view, now), bool(granted), before)
        return total, alerts, oldest, bool(granted), before

    def _run_ledger(
        self,
        account: str,
        now: float,
        entries: dict[str, tuple[float, int, bool]],
        reservation: tuple[str, int, bool, int] | None = None,
    ) -> tuple[int, int, float | None, int, str, bool, int]:
        member, n, alert, cap = reservation or ("", 0, False, 0)
        args: list[object] = [
            repr(now),
            WINDOW,
            LIVE_TTL,
            self.process if self.heartbeat else "",
            uuid.uuid4().hex,
            _LEDGER_KEEP,
            member,
            n,
            int(alert),
            cap,
        ]
        for name, (at, count, is_alert) in entries.items():
            args += [name, repr(at), count, int(is_alert)]
        keys = [self._key(account, k) for k in ("ledger", "totals", "live", "epoch")]
        reply = self._call(lambda: self._ledger(keys=keys, args=args))
        total, alerts, oldest, live, epoch, granted, before = reply
        return (
            max(0, int(total)),
            max(0, int(alerts)),
            float(oldest) if oldest else None,
            int(live),
            str(epoch),
            bool(int(granted)),
            max(0, int(before)),
        )

    def _share(self, view: _View, now: float) -> tuple[int, int, float | None]:
        """The count that keeps this process within its local share (module docstring)."""
        return self._share_for(view, now, self.limit)

    def _share_for(self, view: _View, now: float, cap: int) -> tuple[int, int, float | None]:
        """``_share`` for a send that may count up to ``cap`` (ordinary mail stops
        ``alert_reserve`` of the limit early): this process's share is its part of
        what the fleet had left *under that cap* at the last sync, so the reserve is
        kept once for the fleet, not once per process."""
        with self._lock:
            if now - view.synced < LIVE_TTL:
                room = view.remaining - (self.limit - cap)  # under the cap, at the last sync
                share = max(0, room) // view.live
            elif cap >= self.limit:
                # No recent sync (or none: started during the outage): ordinary mail
                # waits, alerts still go, within this process's part of the reserve
                # kept for them, for the whole outage.
                share = int(self.limit * self.alert_reserve) // view.live
            else:
                share = 0
            used = cap - share + view.spent
            alerts = view.alerts + view.spent_alerts
            soon = now - WINDOW + RETRY_SOON  # a refused send is tried again soon
            oldest = soon if view.oldest is None else min(view.oldest, soon)
        return used, alerts, oldest

    def _view(self, account: str) -> _View:
        with self._lock:
            return self._views.setdefault(account, _View())

    # -- plumbing ---------------------------------------------------------------------

    def _call(self, do: Callable[[], Any]) -> Any:
        """Run one Redis call under the breaker; its errors become ``StateUnavailable``."""
        if time.monotonic() < self._down_until:
            raise StateUnavailable(self._outage or "Redis is unreachable")
        try:
            result = do()
        except self._errors as exc:
            why = self._why(exc)
            with self._lock:
                self._down_until = time.monotonic() + BREAK
                first, self._outage = self._outage is None, why
            if first:
                log.warning(
                    "postbud cannot reach its shared state at %s (%s); this process "
                    "keeps the gates itself and sends only its share of the daily "
                    "limit until Redis answers again.",
                    self.url,
                    why,
                )
            raise StateUnavailable(why) from None  # the cause's frames hold the password
        if self._outage is not None:
            with self._lock:
                back, self._outage = self._outage is not None, None
            if back:
                log.info("postbud's shared state at %s answers again.", self.url)
        return result

    def _why(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._password:
            text = text.replace(self._password, "********")
        lowered = text.lower()
        if "authentication" in lowered or "password" in lowered or "noauth" in lowered:
            text += "; check the password in state or POSTBUD_STATE_PASSWORD"
        return text

    @staticmethod
    def _key(account: str, what: str) -> str:
        return f"postbud:{{{account.lower()}}}:{what}"

    def _gate_key(self, name: str) -> str:
        # Gate names are "kind:account[:...]" (state.login_gate and the like).
        account = name.split(":")[1] if ":" in name else name
        return self._key(account, f"gate:{name}")


def _gate(fields: dict[str, str]) -> Gate:
    return Gate(
        until=float(fields["until"]),
        since=float(fields["since"]),
        step=int(fields["step"]),
        reason=fields.get("reason", ""),
        credential=fields.get("credential") or None,
    )
