"""Storm control: which alert mails go out, so an inbox never floods and no count is lost.

The policy is a pure function over the state of one handler (its "scope"): per
fingerprint, how often it happened, when it was last mailed and how many occurrences
no mail has reported yet; per scope, the current one-hour window and how many mails
went out in it. The stores (``_alert_store``) load that state, call ``decide`` with
the occurrences counted since the last tick, and save it again in one transaction,
so processes sharing a spool share one state and exactly one of them sends each mail.

Every occurrence ends up in exactly one mail: a first alert (one occurrence), a
follow-up ("N more times since …") when the cooldown ends, or a digest once the
hourly cap is used up or alerts passed their share of the daily quota.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["WINDOW", "Counted", "FpState", "Mail", "ScopeState", "decide", "merge", "next_due"]

#: The cap counts mails per window of this many seconds; a digest closes each window.
WINDOW = 3600.0


@dataclass
class Counted:
    """Occurrences of one fingerprint since the last tick, already described (the
    handler describes them before it opens a spool transaction)."""

    count: int
    first_at: float
    last_at: float
    first: dict[str, Any]  # the first occurrence, described
    last: dict[str, Any]  # the last one (the same dict when count is 1)


@dataclass
class FpState:
    """One fingerprint of one scope (a row of ``alert_state`` in the spool)."""

    key: str
    total: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    mailed_at: float | None = None  # the last first alert or follow-up: starts a cooldown
    pending: int = 0  # occurrences no mail has reported yet
    pending_since: float | None = None
    digest: int = 0  # occurrences waiting for the window's digest
    digest_first: float | None = None
    digest_last: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # the last occurrence, described
    changed: bool = False


@dataclass
class ScopeState:
    """The hourly window of one scope."""

    window_start: float | None = None
    window_mails: int = 0


@dataclass
class Mail:
    """One alert mail to render: ``first``, ``follow-up`` or ``digest``."""

    kind: Literal["first", "follow-up", "digest"]
    count: int  # occurrences this mail reports (the sum over entries for a digest)
    since: float | None = None
    last_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    entries: list[FpState] = field(default_factory=list)  # a digest's fingerprints


def merge(row: FpState, counted: Counted) -> dict[str, Any]:
    """Add ``counted`` to ``row``; returns the description of its first occurrence."""
    if row.total == 0:
        row.first_at = counted.first_at
    row.total += counted.count
    row.last_at = max(row.last_at, counted.last_at)
    row.pending += counted.count
    row.pending_since = min(row.pending_since or counted.first_at, counted.first_at)
    row.detail = counted.last
    row.changed = True
    return counted.first


def decide(
    scope: ScopeState,
    rows: dict[str, FpState],
    firsts: dict[str, dict[str, Any]],
    now: float,
    *,
    cooldown: float,
    cap: int,
    digests_only: bool,
    force: bool,
) -> list[Mail]:
    """The mails to send now; updates ``scope`` and ``rows`` to match.

    Args:
        firsts: For fingerprints merged in this tick, their first occurrence's details
            (a first alert shows the first occurrence, a follow-up the last).
        digests_only: Alerts passed ``alert_max_share`` of the daily quota.
        force: ``flush``/``close``: report pending counts now, cooldown or not, and
            send the digest without waiting for the window to end.
    """
    mails: list[Mail] = []
    if scope.window_start is not None and now >= scope.window_start + WINDOW:
        mails.extend(_digest(rows))
        scope.window_start, scope.window_mails = None, 0
    # Oldest first; ties keep the order the fingerprints were first seen in.
    for row in sorted(rows.values(), key=lambda r: r.pending_since or 0.0):
        # A first alert leaves the rest pending; when forced, they follow at once.
        while row.pending > 0:
            cooling = row.mailed_at is not None and now < row.mailed_at + cooldown
            if cooling and not force:
                break
            mail = _one(scope, row, firsts, now, cooldown, cap, digests_only)
            if mail is not None:
                mails.append(mail)
    if force:
        mails.extend(_digest(rows))
    return mails


def _one(
    scope: ScopeState,
    row: FpState,
    firsts: dict[str, dict[str, Any]],
    now: float,
    cooldown: float,
    cap: int,
    digests_only: bool,
) -> Mail | None:
    """Report ``row``'s pending occurrences: a mail, or the digest past the cap."""
    row.changed = True
    if scope.window_start is None:
        scope.window_start = now
    if digests_only or scope.window_mails >= cap:
        row.digest += row.pending
        row.digest_first = min(row.digest_first or now, row.pending_since or now)
        row.digest_last = max(row.digest_last or 0.0, row.last_at)
        row.pending, row.pending_since = 0, None
        return None
    scope.window_mails += 1
    # Repeats counted during a cooldown make a follow-up; an occurrence after the
    # cooldown ended is a first alert again.
    repeats = row.mailed_at is not None and (row.pending_since or now) <= row.mailed_at + cooldown
    row.mailed_at = now
    if repeats:
        mail = Mail("follow-up", row.pending, row.pending_since, row.last_at, row.detail, row.key)
        row.pending, row.pending_since = 0, None
        return mail
    # A first alert reports one occurrence; the rest wait for the follow-up, which
    # counts them since that first occurrence.
    detail = firsts.get(row.key, row.detail)
    row.pending -= 1
    if not row.pending:
        row.pending_since = None
    return Mail("first", 1, detail.get("at"), detail.get("at"), detail, row.key)


def next_due(
    scope: ScopeState, rows: dict[str, FpState], cooldown: float, *, digests: bool = False
) -> float | None:
    """When ``decide`` next has something to do without new occurrences.

    ``digests``: rows not in ``rows`` hold counts for the window's digest.
    """
    dues = [
        r.mailed_at + cooldown for r in rows.values() if r.pending > 0 and r.mailed_at is not None
    ]
    if scope.window_start is not None and (digests or any(r.digest for r in rows.values())):
        dues.append(scope.window_start + WINDOW)
    return min(dues, default=None)


def _digest(rows: dict[str, FpState]) -> list[Mail]:
    entries = [r for r in rows.values() if r.digest > 0]
    if not entries:
        return []
    entries.sort(key=lambda r: (-r.digest, str(r.detail.get("message", ""))))  # noisiest first
    mail = Mail(
        "digest",
        sum(r.digest for r in entries),
        min(r.digest_first or 0.0 for r in entries),
        max(r.digest_last or 0.0 for r in entries),
        entries=[
            FpState(
                r.key,
                total=r.digest,
                first_at=r.digest_first or 0.0,
                last_at=r.digest_last or 0.0,
                detail=r.detail,
            )
            for r in entries
        ],
    )
    for r in entries:
        r.digest, r.digest_first, r.digest_last, r.changed = 0, None, None, True
    return [mail]
