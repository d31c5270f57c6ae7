"""The per-app state of flask_postbud: ``app.extensions["postbud"]``.

One ``Postbud`` object may serve several apps (an app factory called twice, tests), so
nothing that belongs to an app lives on the extension object: each app's state holds its
resolved settings and its Mailer (its connection, token cache and outbox), made on first
use. Later parts (the alert handler, the ``flask postbud`` commands) hang off the same
object (``alerts``).

- Threads: one lock around making a Mailer; a Mailer is thread-safe itself.
- Fork (gunicorn ``--preload``): postbud's Mailer starts over in a child by itself; the
  child gets a new lock here, so a parent thread that held it cannot block the child.
- Exit: postbud's own exit hook drains every outbox; the Mailers with nothing left to
  deliver are closed here first (a polite QUIT), as in django_postbud, but not those of
  an app with a running alert handler (``_alerts``): it still reports through them.
- Suppression: mail is built (and validated) by a Mailer that cannot send (memory
  spool, a transport that refuses), so nothing leaves the process, not even mail an
  earlier process left in the spool.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import postbud

from ._settings import resolve, suppressed

if TYPE_CHECKING:
    from flask import Flask

    from postbud import Envelope

__all__ = ["ExtensionError", "PostbudState", "state_of"]


class ExtensionError(RuntimeError):
    """The extension is used wrongly: registered twice on an app, used on an app it
    was not registered on, or without an app (outside an app context, no ``app=``)."""


class _Shared:
    """The module's lock, the live states (for the exit hook) and whether it is set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: weakref.WeakSet[PostbudState] = weakref.WeakSet()
        self.exit_hook = False


_shared = _Shared()


class _Refuse:
    """The transport of the Mailer that builds suppressed mail: it never sends."""

    def send(self, envelope: Envelope) -> dict[str, tuple[int, str]]:
        raise RuntimeError("flask_postbud: sending is suppressed; this Mailer only builds mail")

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""


class PostbudState:
    """What one app has of postbud: ``app.extensions["postbud"]``.

    The config is read when it is first needed (at ``init_app`` when it holds
    credentials, else at the first send) and then kept, as Flask-SQLAlchemy does;
    ``POSTBUD_SUPPRESS_SEND`` (and ``TESTING``) are read at every send.

    Attributes:
        extension: The ``Postbud`` object registered on the app.
        alerts: The app's alert handler, once there is one (None until then).
    """

    def __init__(self, extension: Any) -> None:
        self.extension = extension
        self.alerts: Any = None
        self._settings: postbud.Settings | None = None
        self._mailer: postbud.Mailer | None = None
        self._builder: postbud.Mailer | None = None

    def __repr__(self) -> str:
        account = self._settings.username if self._settings else "(not resolved yet)"
        return f"<flask_postbud state {account}>"

    def suppressed(self, app: Flask) -> bool:
        """Whether sending is suppressed now (``POSTBUD_SUPPRESS_SEND``, else
        ``MAIL_SUPPRESS_SEND``, else ``app.testing``)."""
        return suppressed(app.config, app.testing)

    def settings(self, app: Flask) -> postbud.Settings:
        """The app's resolved settings; raises ``postbud.ConfigurationError`` naming
        the key."""
        if self._settings is None:
            self._settings = resolve(_config(app))
        return self._settings

    def check(self, app: Flask) -> None:
        """Resolve the config now (``init_app``); under suppression, missing or
        unusable credentials are not an error (the rest is checked)."""
        if self.suppressed(app):
            self.builder(app)
        else:
            self.settings(app)

    def mailer(self, app: Flask) -> postbud.Mailer:
        """The app's Mailer, made on first use (configuration errors raise here)."""
        mailer = self._mailer
        if mailer is not None:
            return mailer
        with _shared.lock:
            if self._mailer is None:
                self._mailer = postbud.Mailer(self.settings(app))
                _track(self)
            return self._mailer

    def builder(self, app: Flask) -> postbud.Mailer:
        """The Mailer that builds mail under suppression: the app's settings (or
        stand-in credentials when it gives none), a memory spool, no transport."""
        builder = self._builder
        if builder is not None:
            return builder
        with _shared.lock:
            if self._builder is None:
                try:
                    settings = self.settings(app)
                except postbud.ConfigurationError:
                    # Raises again if something else than the credentials is wrong.
                    settings = resolve(_config(app), stand_in_credentials=True)
                self._builder = postbud.Mailer(settings.replace(spool=None), transport=_Refuse())
                _track(self)
            return self._builder

    def flush(self, timeout: float | None = None) -> bool:
        """``Mailer.flush`` of the app's Mailer (True when it has none yet)."""
        mailer = self._mailer
        return True if mailer is None else mailer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close the app's Mailers (flushing the outbox for up to ``timeout``, default
        ``exit_timeout``) and forget them and the settings: the next send reads the
        config again and makes a new Mailer. For tests and app teardown. The alert
        handlers go first: their last follow-ups go out through these Mailers."""
        if self.alerts is not None:
            self.alerts.close(timeout)
        with _shared.lock:
            mailers = [m for m in (self._mailer, self._builder) if m is not None]
            self._mailer = self._builder = None
            self._settings = None
        for mailer in mailers:
            mailer.close(timeout)


def state_of(app: Flask) -> PostbudState:
    """The app's state; ``ExtensionError`` when Postbud was not registered on it."""
    state = app.extensions.get("postbud")
    if not isinstance(state, PostbudState):
        raise ExtensionError(
            f"The Flask app {app.name!r} has no Postbud: call postbud.init_app(app) in "
            "the app factory first."
        )
    return state


def _config(app: Flask) -> Mapping[str, Any]:
    return app.config


def _track(state: PostbudState) -> None:
    # Called with the lock held.
    _shared.states.add(state)
    if not _shared.exit_hook:
        # After the first Mailer exists: postbud's own exit hook is registered by then,
        # so this one runs before it (atexit is last in, first out).
        _shared.exit_hook = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    # Only Mailers whose outbox is settled are closed here (flush(0) starts no thread:
    # from Python 3.12 none may start at exit); the others keep their worker for
    # postbud's drain, which follows.
    for state in list(_shared.states):
        if state.alerts is not None and state.alerts.running:
            # Its alert handler still reports (postbud's own exit hook, then
            # logging.shutdown()) through these Mailers: postbud's drain ends them.
            continue
        for mailer in (state._mailer, state._builder):
            if mailer is not None and mailer.flush(0):
                mailer.close(0)


def _after_fork_in_child() -> None:
    _shared.lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
