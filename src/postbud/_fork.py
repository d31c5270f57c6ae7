"""One fork hook for every object that holds a socket, a lock or a handle.

A child process (gunicorn, multiprocessing) must not write to its parent's TLS
session or SQLite handle, nor wait on a lock that a parent thread held at fork time.
Objects register here; in the child each gets ``_after_fork()`` and starts over.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in a child process after ``os.fork()``."""
    _registered.add(obj)


def _in_child() -> None:
    for obj in list(_registered):
        try:
            obj._after_fork()
        except Exception:  # pragma: no cover - one failure must not keep the others
            logging.getLogger("postbud").exception("postbud: a fork hook failed")


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_in_child)
