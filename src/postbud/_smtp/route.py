"""``redirected(route)``: the one place where the test redirect of connections lives.

``postbud.testing.FakeGmail.intercept()`` uses it so that code configured for
smtp.gmail.com (a Django settings file, a script) talks to the local fake over
verified TLS without changing its configuration. Process-wide on purpose: the outbox
worker's connections, made on another thread, must be redirected too.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Route", "current_route", "redirected"]


@dataclass(frozen=True)
class Route:
    """Where every new connection goes while ``redirected`` is active."""

    host: str
    port: int
    security: str
    context: ssl.SSLContext


_lock = threading.Lock()
_current: list[Route] = []


def current_route() -> Route | None:
    """The innermost active redirect, or None (connect where the settings say)."""
    return _current[-1] if _current else None


@contextlib.contextmanager
def redirected(route: Route) -> Iterator[Route]:
    """Send every new connection to ``route`` while the block runs (blocks nest)."""
    with _lock:
        _current.append(route)
    try:
        yield route
    finally:
        with _lock:
            _current.remove(route)
