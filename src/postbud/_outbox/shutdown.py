"""The one exit hook: alert handlers report first, then the outboxes drain.

At interpreter exit the alert handlers queue their last follow-ups and digests (the
``first`` callbacks, registered by ``postbud.alerts``) while the outbox workers still
run; then every running worker gets the time left of one shared deadline. From
Python 3.12 no thread may start at exit, so only workers already running drain; a
worker an alert handler keeps alive stays up for ``logging.shutdown()`` (registered
before postbud, so it runs after this hook), which flushes and closes the handlers
within the same deadline. Then the spool connections of the outboxes nobody closed
are closed (they reopen if an alert handler's close() still needs them).
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the outboxes register themselves; this module only drains them
    from .outbox import Outbox

__all__ = ["first", "track"]

_live: weakref.WeakSet[Outbox] = weakref.WeakSet()
_first: list[Callable[[], None]] = []


def track(outbox: Outbox) -> None:
    """Drain ``outbox`` at exit (a weak reference: a dropped Mailer is not kept)."""
    _live.add(outbox)


def first(callback: Callable[[], None]) -> None:
    """Run ``callback`` at exit before the outboxes drain (the alert handlers' report)."""
    if callback not in _first:
        _first.append(callback)


@atexit.register
def _at_exit() -> None:
    for callback in list(_first):
        try:
            callback()
        except Exception:  # one failing callback must not keep the outboxes from draining
            logging.getLogger("postbud").exception("postbud: an exit callback failed")
    # One deadline for all Mailers, not one after the other. A worker already told to
    # stop (close()) is not waited for a second time.
    outboxes = list(_live)
    running = [o for o in outboxes if o.thread is not None and not o.stopping]
    if running:
        deadline = time.monotonic() + max(o.settings.exit_timeout for o in running)
        for outbox in running:
            outbox.flush(max(0.0, deadline - time.monotonic()), start=False)
        for outbox in running:
            if not outbox.keepers:  # an alert handler's close() stops the others later
                outbox.stop(wait=max(0.0, deadline - time.monotonic()))
    for outbox in outboxes:
        if not outbox.keepers:  # the spool's connections, of Mailers nobody closed
            outbox.release()
