"""Process-wide Mailers, one per resolved settings (``mailer_for``).

Django builds a new backend for every ``get_connection()`` and, under ``MAILERS``, for
every ``mail.mailers[alias]`` access, so a backend instance must hold nothing that costs:
the connection, the OAuth2 token cache and the outbox (its worker, its spool handles)
live here, one set per distinct ``postbud.Settings``, for the life of the process.

- Threads: one lock around the dict; a Mailer is thread-safe itself.
- Fork (gunicorn ``--preload``, multiprocessing): postbud's Mailer already starts over in
  a child (its connection is dropped without a word, its worker and locks are new); this
  module gives the child a new lock, so a parent thread that held it at fork time cannot
  block the child.
- Exit: postbud's own exit hook drains every outbox; the Mailers with nothing left to
  deliver are closed here first (a polite QUIT).
- Django's ``setting_changed`` (``override_settings`` in tests) for ``EMAIL_*``,
  ``POSTBUD`` or ``MAILERS``: every Mailer is evicted and closed, so tests leak no
  Mailers, threads or database handles. (The ``POSTBUD_*`` environment is part of the
  key: a changed environment makes new settings, hence a new Mailer; ``close_all()``
  ends the old ones.)
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from django.core.signals import setting_changed

import postbud

from ._settings import ImproperlyConfigured

__all__ = ["close_all", "mailer_for"]


class _Registry:
    """The process's Mailers (with the connection each was made with) and their lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mailers: dict[postbud.Settings, postbud.Mailer] = {}
        self.exit_hook = False


_registry = _Registry()


def mailer_for(settings: postbud.Settings) -> postbud.Mailer:
    """The process's Mailer for these settings: made on first use, then shared.

    Equal settings give the same Mailer (one connection, one token cache, one outbox).
    A configuration error found while building it (an unreadable OAuth2 token file...)
    raises ``ImproperlyConfigured``, also a ``postbud.ConfigurationError``.
    """
    mailer = _registry.mailers.get(settings)
    if mailer is not None:
        return mailer
    with _registry.lock:
        mailer = _registry.mailers.get(settings)
        if mailer is None:
            mailer = _make(settings)
            _registry.mailers[settings] = mailer
            _register_exit_hook()
    return mailer


def close_all() -> None:
    """Forget every Mailer and close it (flushing its outbox for up to ``exit_timeout``)."""
    with _registry.lock:
        mailers = list(_registry.mailers.values())
        _registry.mailers.clear()
    for mailer in mailers:
        mailer.close()


def _make(settings: postbud.Settings) -> postbud.Mailer:
    try:
        # One connection per alias: the outbox worker shares the Mailer's (a given
        # transport serves both; it is thread-safe), so blocking and BACKGROUND sends
        # of an alias use one Gmail session.
        return postbud.Mailer(settings, transport=postbud.SMTPTransport(settings))
    except postbud.MissingDependencyError:
        raise
    except ImproperlyConfigured:
        raise
    except postbud.ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("EMAIL_") or setting in ("POSTBUD", "MAILERS"):
        close_all()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_postbud.registry")


def _after_fork_in_child() -> None:
    _registry.lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _register_exit_hook() -> None:
    # Once, after the first Mailer exists: postbud's own exit hook is registered by then,
    # so this one runs before it (atexit is last in, first out).
    if not _registry.exit_hook:
        _registry.exit_hook = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    # Only Mailers whose outbox is settled are closed here (flush(0) starts no thread:
    # from Python 3.12 none may start at exit); the others keep their worker for
    # postbud's drain, which follows.
    with _registry.lock:
        mailers = list(_registry.mailers.values())
    for mailer in mailers:
        if mailer.flush(0):
            mailer.close(0)
