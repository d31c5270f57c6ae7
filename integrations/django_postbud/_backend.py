"""``django_postbud.EmailBackend``: Django's mail, sent through postbud.

Thin on purpose: Django serialises each message itself (``message.message()``,
``message.recipients()``), so everything Django can build goes out as Django built it;
postbud sends it (verified TLS, one pooled connection per alias, Gmail's errors in
words, the quota ledger) or, with ``BACKGROUND``, queues it in the outbox.

An instance holds nothing that costs: Django makes one per ``get_connection()`` and,
under ``MAILERS``, one per ``mail.mailers[alias]`` access. The Mailer (connection, token
cache, outbox) comes from the process-wide registry (``_registry.mailer_for``).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from email.message import Message
from typing import Any, TypeVar, cast

import django
from django.conf import settings as django_settings
from django.core.mail.backends.base import BaseEmailBackend
from django.views.decorators.debug import sensitive_variables

import postbud

from ._registry import mailer_for
from ._settings import OPTION_NAMES, resolve

__all__ = ["EmailBackend"]

# Django 6.1's BaseEmailBackend takes alias= and _ignore_unknown_kwargs= and raises
# InvalidMailer for unknown OPTIONS; 5.2's and 6.0's take fail_silently only.
_MAILERS_API = django.VERSION >= (6, 1)
# fail_silently not given at all: 6.1's base then neither warns nor counts it an option.
_NOT_PROVIDED: Any = object()
_F = TypeVar("_F", bound=Callable[..., Any])


def _locals_hidden(func: _F) -> _F:
    """Django's ``@sensitive_variables()``: in an error report (``ExceptionReporter``,
    what ``AdminEmailHandler`` mails) the locals of ``func`` and of every frame it
    calls are starred, so an app password in the options, or in the frames of a login
    below, never reaches ADMINS. (Typed for mypy: Django is untyped.)"""
    return cast(_F, sensitive_variables()(func))


class EmailBackend(BaseEmailBackend):
    """Django's email backend for Gmail, through postbud.

    ``EMAIL_BACKEND = "django_postbud.EmailBackend"``, or as a ``MAILERS`` backend
    (Django 6.1) with OPTIONS. Settings are looked up by ``django_postbud._settings.resolve``
    (keyword arguments / OPTIONS, then ``POSTBUD``, then Django's ``EMAIL_*``, then the
    ``POSTBUD_*`` environment); a configuration error raises here, when the backend is
    made, even with ``fail_silently``.

    - ``open()`` logs in now (a cheap check that the credentials work) and returns
      whether it connected; the connection is the alias's pooled one. ``close()`` ends
      the batch; the pooled connection stays (probed after idle) until exit.
    - ``send_messages(messages)`` returns how many were sent; with ``fail_silently``
      a ``postbud.DeliveryError`` (Gmail down, a refused login, refused recipients) is
      swallowed for that message, nothing else is.
    - With ``BACKGROUND`` (the ``background`` option or ``POSTBUD["BACKGROUND"]``),
      ``send_messages`` queues each message in the outbox (the spool on disk, unless
      ``SPOOL`` is empty) and returns how many were accepted into it, without waiting
      for Gmail; the outbox worker delivers them, retrying transient failures.
    """

    @_locals_hidden  # the options hold the app password; so do resolve()'s frames
    def __init__(
        self,
        fail_silently: Any = _NOT_PROVIDED,
        *,
        alias: str | None = None,
        _ignore_unknown_kwargs: Any = None,
        **options: Any,
    ) -> None:
        ignored = set(_ignore_unknown_kwargs or ())
        # What Django added for its own backends (get_connection(**kwargs) under MAILERS)
        # and this one does not take goes to BaseEmailBackend, which drops it.
        ours = {k: v for k, v in options.items() if k in OPTION_NAMES or k not in ignored}
        theirs = {k: v for k, v in options.items() if k not in ours}
        if _MAILERS_API:
            if alias is not None:
                # Django's rules: fail_silently is not an option (InvalidMailer) unless
                # get_connection(fail_silently=...) passed it (_ignore_unknown_kwargs).
                if fail_silently is not _NOT_PROVIDED:
                    theirs["fail_silently"] = fail_silently
                super().__init__(alias=alias, _ignore_unknown_kwargs=ignored, **theirs)
            else:
                # Without MAILERS, fail_silently is this backend's own argument, as for
                # Django's SMTP backend (passing it on would warn that it is unsupported).
                super().__init__(_ignore_unknown_kwargs=ignored, **theirs)
        else:
            super().__init__(fail_silently=fail_silently is not _NOT_PROVIDED and fail_silently)
        self.fail_silently = bool(fail_silently is not _NOT_PROVIDED and fail_silently)
        if not hasattr(self, "alias"):
            self.alias = alias
        resolved = resolve(alias, ours)
        self.background = resolved.background
        self.mailer = mailer_for(resolved.settings)
        self._opened = False

    def __repr__(self) -> str:
        mode = "background" if self.background else "blocking"
        return f"<django_postbud.EmailBackend {self.mailer.settings.username} ({mode})>"

    def open(self) -> bool | None:
        """Log in now on the alias's pooled connection (not with ``BACKGROUND``: the
        worker logs in). True if this call connected, False if already open, None if
        it failed silently."""
        if self._opened:
            return False
        if not self.background:
            try:
                self.mailer.open()
            except postbud.DeliveryError:
                if not self.fail_silently:
                    raise
                return None
        self._opened = True
        return True

    def close(self) -> None:
        """End the batch. The pooled connection stays for the next one."""
        self._opened = False

    @_locals_hidden  # postbud's frames below hold the login's secrets as locals
    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send (or, with ``BACKGROUND``, queue) each message; return how many were."""
        if not email_messages:
            return 0
        count = 0
        for message in email_messages:
            recipients = [str(address) for address in message.recipients()]
            if not recipients:
                continue
            ready = self._serialise(message)
            try:
                if self.background:
                    self.mailer.submit_message(ready, recipients=recipients)
                else:
                    self.mailer.send_message(ready, recipients=recipients)
            except postbud.DeliveryError:
                if not self.fail_silently:
                    raise
                continue
            count += 1
        return count

    def _serialise(self, message: Any) -> Message:
        """Django's own ``message()``, with postbud's Message-ID (the sender's domain)
        and ``DEFAULT_FROM_EMAIL`` for an empty sender set first: Django would otherwise
        take the Message-ID's domain from ``socket.getfqdn()`` (``DNS_NAME``), which can
        block for seconds and leaks the host name. The caller's message is left as it
        was (sending it again makes a new Message-ID, as Django does)."""
        headers = message.extra_headers
        from_email = message.from_email
        if not from_email:
            message.from_email = django_settings.DEFAULT_FROM_EMAIL
        if not any(str(name).lower() == "message-id" for name in headers):
            domain = self._domain(headers.get("From", message.from_email))
            message.extra_headers = {**headers, "Message-ID": email.utils.make_msgid(domain=domain)}
        try:
            ready: Message = message.message()
        finally:
            message.extra_headers = headers
            message.from_email = from_email
        return ready

    def _domain(self, sender: object) -> str:
        """The domain of ``sender`` (IDNA-encoded), else of the account."""
        address = email.utils.parseaddr(str(sender))[1]
        domain = address.rpartition("@")[2] if "@" in address else ""
        try:
            return domain.encode("idna").decode("ascii") if domain else self._account_domain()
        except UnicodeError:
            return self._account_domain()

    def _account_domain(self) -> str:
        return self.mailer.settings.username.rpartition("@")[2]
