"""Alert state on Redis (``state="redis://…"``): one scope shared by a whole fleet.

A spool is shared by the processes of one machine; with ``state`` a Redis URL the
fingerprint counts, cooldowns, the hourly cap, the digests and the choice of who sends
each mail live on Redis, so every process on every host that uses the same account
and the same Redis behaves like the processes of one spool.

On the server. One scope (the handler's account, recipients, tag, level, subject and
name: a short hash of them, ``<sid>``) is a few keys under ``RedisState.key(account,
"alerts:<sid>...")``: ``alerts:<sid>`` (a hash: the hourly window, a version bumped
by every write, the scope spelled out), ``:rows`` (a hash: one JSON row per
fingerprint), ``:pending`` and ``:digest`` (sets: the rows with pending or digest
counts, so a tick loads only those and the fingerprints it counted, never all 100,000
rows of a storm, except when it sends the digest), ``:cooling`` (a sorted set: rows
with nothing to report, by the end of their cooldown, when they are forgotten),
``:here`` (a sorted set: one heartbeat per handler) and ``:tick:<owner>`` (the token of
this handler's last write, deleted when it closes). Every key written gets an expiry:
``STALE`` (a week) for the state, twice ``PRESENCE`` for the heartbeats, a day for the
token.

One tick is an optimistic transaction: WATCH the scope's hash, read it, the heartbeats
and the rows, merge this process's counts and let the policy decide (in Python), then
write everything in MULTI/EXEC; every write bumps the version, so of two processes that
read the same state, one EXEC succeeds and the other reads again and retries. The
process whose EXEC succeeded, and only that one, queues the mails in its own outbox,
at once, after EXEC (Redis and SQLite cannot share a transaction; the mails are
rendered before MULTI so that nothing but queueing is left after EXEC).

What this does not cover (documented): if that host dies in the instant between EXEC
and its spool keeping the mail, with a disk that does not survive it, the alert is lost
while the fleet counts it as sent. With ``spool=None`` the mail is in memory until it
is delivered, as every mail of such a Mailer.

An EXEC whose answer never came (the connection dropped after it was sent) may or may
not have been applied. Its counts and mails are then held here, not reported again and
not sent, until Redis answers: the store then asks (bumping the version, so that a
late EXEC can no longer apply) whether its token was written. Applied: the held mails
are queued. Not applied: the held counts are merged into the next write. A handler that
closes while Redis is still away reports the held counts from memory (twice, if Redis
had applied them: the one case where a count may be reported twice).

When Redis is unreachable (``StateUnavailable``, see ``_carry``) the ticker counts and mails in this
process's memory (``LocalStore``, seeded with the cooldowns this process last saw, so
an error it knew was mailed is not mailed as new). When Redis answers again, the next
write merges the memory's counts that no mail reported and the times it mailed
(``Carry``): no count is reported twice and no error mailed twice as "first".
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from postbud._message import Envelope
from postbud._outbox import QueueBusy, RedisState, StateUnavailable

from ._carry import Carry, absorb, as_carry, combined
from ._policy import Counted, FpState, ScopeState, merge, next_due
from ._store import PRESENCE, STALE, Commit, Decide, Store, _idle, _whole

__all__ = ["RedisStore", "Unsure"]

#: Optimistic transactions tried per tick before the counts wait for the next one.
ATTEMPTS = 10
#: Up to this many seconds (times the attempt) between two attempts, at random.
CONFLICT_PAUSE = 0.003
#: Rows forgotten (cooldown over, nothing to report) per write at most.
PURGE = 1_000
#: Fields per Redis command when many rows are read or written at once.
CHUNK = 5_000
#: Cooldowns remembered for a fall-back to memory (the newest are kept).
KNOWN_MAX = 10_000

_KEEP = int(STALE)
_HERE_KEEP = math.ceil(2 * PRESENCE)
_TICK_KEEP = 86400  # a write in doubt is settled at the next contact with Redis


class Unsure(StateUnavailable):
    """Redis may or may not have applied a tick's write: its counts are held (above)."""


@dataclass
class _Limbo:
    """A write Redis may or may not have applied (see the module docstring)."""

    token: str
    envelopes: list[Envelope]
    carry: Carry
    marks: dict[str, float]


@dataclass
class _Read:
    scope: ScopeState
    rows: dict[str, FpState]
    alone: bool
    digests_elsewhere: bool
    forget: list[str]  # rows to delete: cooled, or unreadable
    lost: bool  # the scope's hash is gone (Redis lost its data, or a week idle)


class RedisStore(Store):
    """One scope's alert state on Redis, shared by every process that uses it.

    Args:
        state: The Mailer's shared state (``outbox.ledger.state``).
        account: The sending account (the keys' namespace).
        scope: What makes handlers share state (the ticker's scope string).
        owner: This handler, for its heartbeat (host, pid, object).
        submit: Queues an alert mail in this process's outbox.
    """

    shared = True

    def __init__(
        self,
        state: RedisState,
        account: str,
        scope: str,
        owner: str,
        submit: Callable[[Envelope], object],
    ) -> None:
        self.state = state
        self.scope = scope
        self.owner = owner
        self._submit = submit
        sid = hashlib.sha256(scope.encode()).hexdigest()[:16]
        base = state.key(account, f"alerts:{sid}")
        self.keys = {
            "scope": base,
            "rows": f"{base}:rows",
            "pending": f"{base}:pending",
            "digest": f"{base}:digest",
            "cooling": f"{base}:cooling",
            "here": f"{base}:here",
            "tick": f"{base}:tick:{owner}",
        }
        self._cooldown = 0.0
        self._known: dict[str, float] = {}  # fingerprint -> last mail, cooldown running
        self._limbo: _Limbo | None = None
        self._held: Carry | None = None  # a limbo Redis did not apply: for the next write
        #: Rows the last tick loaded from Redis (the tests check a storm stays bounded).
        self.loaded = 0

    # -- for the ticker -----------------------------------------------------------------

    def marks(self, now: float) -> dict[str, float]:
        """The fingerprints whose cooldown this process last saw running: a fall-back to
        memory does not mail them again as new."""
        return {k: m for k, m in self._known.items() if now < m + self._cooldown}

    def abandon(self) -> Carry | None:
        """What this store holds for Redis (a closing handler reports it from memory)."""
        limbo, self._limbo = self._limbo, None
        held, self._held = self._held, None
        return combined(held, limbo.carry if limbo is not None else None)

    def run(
        self,
        deltas: dict[str, Counted],
        now: float,
        cooldown: float,
        decide: Decide,
        commit: Commit,
        *,
        force: bool = False,
        leaving: bool = False,
        carry: Carry | None = None,
    ) -> float | None:
        """As ``Store.run``; ``carry``: this process's memory from an outage, merged into
        this write. Raises ``StateUnavailable`` (nothing written: the caller keeps the
        counts), ``Unsure`` (the counts and ``carry`` are held here) or ``QueueBusy``
        (other processes kept changing the state: try again at the next tick)."""
        self._cooldown = cooldown
        self._settle(now)
        carry = combined(self._held, carry)
        wall = time.time()
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, CONFLICT_PAUSE * attempt))
            done, due = self._attempt(deltas, carry, now, decide, commit, force, leaving, wall)
            if done:
                self._held = None
                return due
        raise QueueBusy(
            f"the alert state on Redis changed {ATTEMPTS} times during one tick; "
            "the counts wait for the next"
        )

    # -- one tick -----------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Find out whether a write whose answer was lost was applied (module docstring)."""
        limbo = self._limbo
        if limbo is None:
            return
        applied = self.state.call(lambda: self._was_applied(limbo.token))
        self._limbo = None
        if applied:
            self._remember(limbo.marks.items(), now)
            for envelope in limbo.envelopes:
                self._submit(envelope)
        else:
            self._held = combined(self._held, limbo.carry)

    def _was_applied(self, token: str) -> bool:
        k = self.keys
        pipe = self.state.client.pipeline()
        try:
            # The bump makes a write still on its way (a server that hung) fail its WATCH.
            pipe.hincrby(k["scope"], "ver", 1)
            pipe.expire(k["scope"], _KEEP)
            pipe.get(k["tick"])
            return bool(pipe.execute()[2] == token)
        finally:
            _release(pipe)

    def _attempt(
        self,
        deltas: dict[str, Counted],
        carry: Carry | None,
        now: float,
        decide: Decide,
        commit: Commit,
        force: bool,
        leaving: bool,
        wall: float,
    ) -> tuple[bool, float | None]:
        """Read, decide, write once: (False, None) when another process wrote first,
        else (True, when to look again)."""
        pipe = self.state.client.pipeline()
        sent = False
        token = uuid.uuid4().hex
        rows: dict[str, FpState] = {}
        envelopes: list[Envelope] = []
        try:
            wanted = set(deltas) | (set(carry.rows) if carry is not None else set())
            read: _Read = self.state.call(lambda: self._read(pipe, wanted, now, force, wall))
            scope, rows = read.scope, read.rows
            self.loaded = len(rows)
            if read.lost:  # a restart without persistence: the cooldowns this process saw
                for key, mailed in self.marks(now).items():
                    absorb(rows.setdefault(key, FpState(key)), FpState(key, mailed_at=mailed))
            if carry is not None:
                for key, held in carry.rows.items():
                    absorb(rows.setdefault(key, FpState(key)), held)
                scope.window_mails += carry.mails
                if scope.window_start is None:
                    scope.window_start = carry.window_start
            firsts = {k: merge(rows.setdefault(k, FpState(k)), d) for k, d in deltas.items()}
            if carry is not None:
                firsts.update(carry.firsts)  # earlier than this tick's
            commit(decide(scope, rows, firsts, force and read.alone), envelopes.append)

            def write() -> bool:
                nonlocal sent
                self._queue_writes(pipe, scope, rows, read.forget, now, leaving, wall, token)
                sent = True
                try:
                    pipe.execute()
                except _redis_watch_error() as exc:
                    if exc.__context__ is None:  # EXEC answered: a watched key changed
                        return False
                    raise  # the connection failed during EXEC: applied or not?
                return True

            if not self.state.call(write):
                return False, None
        except StateUnavailable as exc:
            if not sent:
                raise
            marks = {k: r.mailed_at for k, r in rows.items() if r.mailed_at is not None}
            waiting = combined(carry, as_carry(deltas)) or Carry()
            self._limbo = _Limbo(token, envelopes, waiting, marks)
            self._held = None  # in the limbo now (``carry`` included it): never twice
            raise Unsure(str(exc)) from None
        finally:
            _release(pipe)
        for envelope in envelopes:  # at once: the window of the module docstring
            self._submit(envelope)
        self._remember(((k, r.mailed_at) for k, r in rows.items()), now)
        return True, next_due(scope, rows, self._cooldown, digests=read.digests_elsewhere)

    def _read(self, pipe: Any, wanted: set[str], now: float, force: bool, wall: float) -> _Read:
        k = self.keys
        pipe.watch(k["scope"])
        fields = pipe.hgetall(k["scope"])
        scope = _scope_state(fields)
        # Every write sets "scope": without it, the state is new or was lost.
        marks = self.marks(now) if "scope" not in fields else {}
        wanted = wanted | set(marks)
        whole = _whole(scope, now, force)
        indexed = set(pipe.smembers(k["pending"]))
        if whole:
            indexed |= set(pipe.smembers(k["digest"]))
        elsewhere = not whole and bool(pipe.exists(k["digest"]))
        here = pipe.zrangebyscore(k["here"], wall - PRESENCE, "+inf")
        cooled = pipe.zrangebyscore(k["cooling"], "-inf", now, start=0, num=PURGE)
        keys = sorted(indexed | wanted)
        rows: dict[str, FpState] = {}
        for chunk in _chunks(keys):
            for key, value in zip(chunk, pipe.hmget(k["rows"], chunk), strict=True):
                row = _row(key, value) if value is not None else None
                if row is not None:
                    rows[key] = row
        # Cooled rows, and indexed ones that are gone or unreadable, are forgotten.
        forget = [key for key in cooled if key not in rows]
        forget += [key for key in indexed if key not in rows]
        alone = not (set(here) - {self.owner})
        return _Read(scope, rows, alone, elsewhere, forget, bool(marks))

    def _queue_writes(
        self,
        pipe: Any,
        scope: ScopeState,
        rows: dict[str, FpState],
        forget: list[str],
        now: float,
        leaving: bool,
        wall: float,
        token: str,
    ) -> None:
        k = self.keys
        cooldown = self._cooldown
        pipe.multi()
        start = "" if scope.window_start is None else repr(scope.window_start)
        fields = {"window_start": start, "window_mails": scope.window_mails, "scope": self.scope}
        pipe.hset(k["scope"], mapping=fields)
        pipe.hincrby(k["scope"], "ver", 1)  # every write: a WATCH of the others fails
        kept: dict[str, str] = {}
        gone = [key for key in forget if key not in rows]
        pending: tuple[list[str], list[str]] = ([], [])  # (add, remove)
        digest: tuple[list[str], list[str]] = ([], [])
        cooling: dict[str, float] = {}
        for key, r in rows.items():
            if not r.changed:
                continue
            if _idle(r, now, cooldown):
                gone.append(key)
                continue
            kept[key] = _dumps(r)
            pending[0 if r.pending else 1].append(key)
            digest[0 if r.digest else 1].append(key)
            if not (r.pending or r.digest):  # cooling: forgotten when it ends
                cooling[key] = (r.mailed_at or now) + cooldown
        cool_gone = gone + [key for key, r in rows.items() if r.changed and key not in cooling]
        for chunk in _chunks(list(kept)):
            pipe.hset(k["rows"], mapping={key: kept[key] for key in chunk})
        for chunk in _chunks(gone):
            pipe.hdel(k["rows"], *chunk)
        for name, (add, remove) in (("pending", pending), ("digest", digest)):
            for chunk in _chunks(add):
                pipe.sadd(k[name], *chunk)
            for chunk in _chunks(remove + gone):
                pipe.srem(k[name], *chunk)
        for chunk in _chunks(list(cooling)):
            pipe.zadd(k["cooling"], {key: cooling[key] for key in chunk})
        for chunk in _chunks(cool_gone):
            pipe.zrem(k["cooling"], *chunk)
        if leaving:
            pipe.zrem(k["here"], self.owner)
        else:
            pipe.zadd(k["here"], {self.owner: wall})
        pipe.zremrangebyscore(k["here"], "-inf", wall - PRESENCE)
        pipe.expire(k["here"], _HERE_KEEP)
        if leaving:  # no write of this handler can be in doubt any more
            pipe.delete(k["tick"])
        else:
            pipe.set(k["tick"], token, ex=_TICK_KEEP)
        for name in ("scope", "rows", "pending", "digest", "cooling"):
            pipe.expire(k[name], _KEEP)

    def _remember(self, mailed: Iterable[tuple[str, float | None]], now: float) -> None:
        """Keep the running cooldowns this process saw (for a fall-back to memory)."""
        cooldown, known = self._cooldown, self._known
        for key, at in mailed:
            if at is not None and now < at + cooldown:
                known[key] = at
            else:
                known.pop(key, None)
        if len(known) > KNOWN_MAX:  # ended cooldowns go; past the bound, the oldest too
            live = [(k, m) for k, m in known.items() if now < m + cooldown]
            if len(live) > KNOWN_MAX:
                live = heapq.nlargest(KNOWN_MAX // 2, live, key=lambda item: item[1])
            self._known = dict(live)


def _redis_watch_error() -> type[BaseException]:
    import redis  # imported by RedisState already (state= needs redis-py)

    error: type[BaseException] = redis.WatchError
    return error


def _release(pipe: Any) -> None:
    """Give the pipeline's connection back without a round trip: after a failure the
    server may hang, and an UNWATCH would wait for it (closing drops the WATCH)."""
    if pipe.watching and pipe.connection is not None:
        pipe.connection.disconnect()
        pipe.watching = False
    pipe.reset()


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _scope_state(fields: dict[str, str]) -> ScopeState:
    try:
        start = fields.get("window_start") or ""
        return ScopeState(float(start) if start else None, int(fields.get("window_mails", 0)))
    except ValueError:
        return ScopeState()


def _dumps(r: FpState) -> str:
    values = [
        r.total,
        r.first_at,
        r.last_at,
        r.mailed_at,
        r.pending,
        r.pending_since,
        r.digest,
        r.digest_first,
        r.digest_last,
        r.detail,
    ]
    return json.dumps(values, default=repr)


def _row(key: str, value: str) -> FpState | None:
    try:
        v = json.loads(value)
        return FpState(key, *v[:9], detail=dict(v[9]))  # type: ignore[misc]
    except (ValueError, TypeError, IndexError):
        return None
