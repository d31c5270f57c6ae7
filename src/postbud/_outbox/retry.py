"""``RetryPolicy``: when the outbox tries again, as a value passed in, not module constants.

Tests (and, some day, a user with unusual needs) pass a policy with other figures
instead of patching globals; a Mailer keeps the one it was given for its lifetime.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_POLICY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """The outbox's timings, in seconds.

    Attributes:
        base_delay: Retry delays are full jitter over ``base_delay × 2ⁿ``...
        max_delay: ...at most this long; a known ``retry_after`` wins over both.
        jitter: False makes a delay exactly ``base_delay × 2ⁿ`` (tests).
        hold: How long delivery holds after Gmail's 550 5.4.5 before one message probes.
        setup_pause: How long the worker waits after a set-up it cannot send with (an
            SSL context loosened after it was given); refused logins are the gates'
            business (``gates.py``: until the credentials change).
        connect_base, connect_max: After failed connections, no new one for
            ``connect_base × 2ⁿ⁻¹`` (n failures in a row), at most ``connect_max``; a
            TLS failure waits ``connect_max`` at once.
        poll: How often an idle worker looks for rows other processes left in the spool.
        idle_exit: An idle worker ends after this long with nothing queued (the next
            submit restarts it), so a Mailer dropped without close() keeps no thread.
        quiet_truncate: The WAL is emptied (delivered bodies gone from it) after this
            long without work.
        callers_quiet, callers_max_wait: While callers submit, the worker waits until
            they pause ``callers_quiet`` (at most ``callers_max_wait`` per message)
            before it takes the next one (see ``Worker.let_callers_finish``).
    """

    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: bool = True
    hold: float = 3600.0
    setup_pause: float = 300.0
    connect_base: float = 1.0
    connect_max: float = 300.0
    poll: float = 1.0
    idle_exit: float = 30.0
    quiet_truncate: float = 1.0
    callers_quiet: float = 0.002
    callers_max_wait: float = 0.02

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds until the next try: ``retry_after`` if known, else the backoff."""
        if retry_after is not None:
            return retry_after
        step = min(self.max_delay, self.base_delay * 2.0 ** min(attempts, 30))
        return random.uniform(0, step) if self.jitter else step


DEFAULT_POLICY = RetryPolicy()
