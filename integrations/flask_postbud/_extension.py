"""``Postbud``: the Flask extension, and Flask-Mail's ``Mail`` under the same roof.

A translation, nothing more: ``send``/``submit`` turn their arguments (or a Flask-Mail
``Message``) into ``Mailer.build``'s, render templates with Flask's own
``render_template``, and hand the envelope to the app's Mailer (``deliver`` or
``enqueue``). The app's state, its Mailer included, lives in ``app.extensions["postbud"]``
(``_state``); this object holds only who records (``record_messages``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import flask

import postbud

from ._alerts import install_alerts
from ._cli import postbud_group
from ._compose import app_context, compose, fields_of
from ._message import AddressLike, Attachments, Connection, InlineLike, Message, Recipients
from ._record import Recorder
from ._settings import CONFIG_KEYS, has_credentials, unknown_key
from ._state import ExtensionError, PostbudState, state_of

__all__ = ["Postbud"]


class Postbud:
    """postbud for Flask apps: ``Postbud(app)``, or ``postbud = Postbud()`` and
    ``postbud.init_app(app)`` in the app factory. Also importable as ``Mail``.

    Config: ``app.config["POSTBUD_*"]``, else Flask-Mail's ``MAIL_*`` keys, else the
    ``POSTBUD_*`` environment (the mapping: ``flask_postbud._settings``).
    ``POSTBUD_SUPPRESS_SEND`` (default: ``app.testing``) keeps every mail in the process;
    ``record_messages()`` shows what would have been sent.

    Which app: the current one (``flask.current_app``: in a view, a CLI command, a
    ``with app.app_context():`` block). A background thread or a task that holds the app
    passes ``app=app`` to ``send``, ``submit``, ``connect`` or ``mailer``, or pushes
    ``with app.app_context():`` itself; either works, templates too.
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        self._recorder = Recorder()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Register on ``app``: every ``POSTBUD_*`` key defaults to None (unset); an
        unknown ``POSTBUD_*`` key raises now, and so does the rest of the configuration
        when it holds credentials (else at the first send, so the factory may fill the
        config later). A second registration on the same app raises ``ExtensionError``.
        """
        if "postbud" in app.extensions:
            raise ExtensionError(
                f"Postbud is already registered on the Flask app {app.name!r}; use the "
                "Postbud object that was registered (current_app.extensions['postbud'])."
            )
        for key in CONFIG_KEYS:
            app.config.setdefault(key, None)
        error = unknown_key(app.config)
        if error is not None:
            raise error
        state = PostbudState(self)
        if has_credentials(app.config):
            state.check(app)
        app.extensions["postbud"] = state
        install_alerts(app, state)
        app.cli.add_command(postbud_group)

    # -- sending ----------------------------------------------------------------------

    def send(
        self,
        to: Recipients | Message,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        *,
        template: str | None = None,
        context: Mapping[str, Any] | None = None,
        cc: Recipients = None,
        bcc: Recipients = None,
        reply_to: Recipients = None,
        sender: AddressLike | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Attachments = None,
        inline: Mapping[str, InlineLike] | None = None,
        app: flask.Flask | None = None,
    ) -> postbud.SendResult:
        """Send one mail now (blocking, one attempt) and return the ``SendResult``.

        The arguments of ``postbud.Mailer.send`` (addresses may also be Flask-Mail's
        ``(name, address)`` tuples), or ``send(message)`` with a Flask-Mail-style
        ``Message``. Under suppression nothing is sent; the result lists every
        recipient as accepted.

        Args:
            template: ``"mail/welcome"`` renders ``mail/welcome.txt`` and/or
                ``mail/welcome.html`` with ``render_template`` (autoescaped in the HTML)
                as the bodies: give it instead of ``text`` and ``html``.
            context: The template's variables.
            app: The app to send for, when it is not the current one (a thread).

        Raises:
            postbud.InvalidMessageError: A bad address, header or attachment.
            postbud.ConfigurationError: The app's config is wrong (naming the key).
            jinja2.TemplatesNotFound: Neither template file exists.
            postbud.DeliveryError: Gmail refused or could not be reached.
        """
        fields = fields_of(locals())
        envelope, result = self._go(to, fields, app, None)
        assert result is not None
        return result

    def submit(
        self,
        to: Recipients | Message,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        *,
        template: str | None = None,
        context: Mapping[str, Any] | None = None,
        cc: Recipients = None,
        bcc: Recipients = None,
        reply_to: Recipients = None,
        sender: AddressLike | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Attachments = None,
        inline: Mapping[str, InlineLike] | None = None,
        priority: Literal["normal", "alert"] = "normal",
        app: flask.Flask | None = None,
    ) -> str:
        """Queue one mail for the outbox (non-blocking) and return its Message-ID.

        The arguments of ``send`` (a ``Message`` too), plus ``priority`` (``"alert"``
        goes first). The mail is validated now and kept in the spool; the outbox's
        worker delivers it, retrying transient failures. Under suppression it is only
        built (and recorded).
        """
        fields = fields_of(locals())
        envelope, _ = self._go(to, fields, app, priority)
        return envelope.message_id

    def send_message(self, *args: Any, **kwargs: Any) -> postbud.SendResult:
        """Flask-Mail's shortcut: ``send(Message(*args, **kwargs))``."""
        return self.send(Message(*args, **kwargs))

    @contextmanager
    def connect(self, app: flask.Flask | None = None) -> Iterator[Connection]:
        """One connection for a batch (``Mailer.connect``): logs in now, closes at the
        end of the block. ``with mail.connect() as conn: conn.send(msg)``."""
        target = self._app(app)
        state = state_of(target)
        if state.suppressed(target):
            yield Connection(self, target)
            return
        with state.mailer(target).connect():
            yield Connection(self, target)

    def record_messages(self) -> AbstractContextManager[list[Message]]:
        """Collect every mail this extension sends (or, under suppression, would have
        sent) while the block runs, in every app and thread, as ``Message`` objects
        with ``.subject``, ``.recipients``, ``.body``, ``.html``, ``.sender``,
        ``.msgId``, ``.data`` (the bytes) and ``.message`` (them parsed)::

            with postbud.record_messages() as outbox:
                client.post("/signup", data={...})
            assert outbox[0].subject == "Welcome"
        """
        return self._recorder.record()

    # -- the app's Mailer --------------------------------------------------------------

    def mailer(self, app: flask.Flask | None = None) -> postbud.Mailer:
        """The app's ``postbud.Mailer`` (for ``flush``, ``stats``...), made on first use."""
        target = self._app(app)
        return state_of(target).mailer(target)

    def flush(self, timeout: float | None = None, *, app: flask.Flask | None = None) -> bool:
        """Wait for the app's outbox (``Mailer.flush``); True when everything is settled."""
        return state_of(self._app(app)).flush(timeout)

    # -- helpers -----------------------------------------------------------------------

    def _app(self, app: flask.Flask | None) -> flask.Flask:
        if app is not None:
            return app
        if not flask.has_app_context():
            raise ExtensionError(
                "flask_postbud needs the app: call it in a view, a CLI command or a "
                "`with app.app_context():` block, or pass app=app (a background thread)."
            )
        current: flask.Flask = flask.current_app._get_current_object()  # type: ignore[attr-defined]
        return current

    def _go(
        self,
        to: Recipients | Message,
        fields: dict[str, Any],
        app: flask.Flask | None,
        priority: Literal["normal", "alert"] | None,
    ) -> tuple[postbud.Envelope, postbud.SendResult | None]:
        """Build the mail with the app's Mailer, then send it (``priority=None``) or
        queue it; under suppression only build it. Then record it."""
        with app_context(self._app(app)) as target:
            source, build = compose(to, fields)
            state = state_of(target)
            suppressed = state.suppressed(target)
            mailer = state.builder(target) if suppressed else state.mailer(target)
            envelope = mailer.build(**build)
            result = None
            if priority is None:
                result = (
                    postbud.SendResult(envelope.message_id, envelope.recipients)
                    if suppressed
                    else mailer.deliver(envelope)
                )
            elif not suppressed:
                mailer.enqueue(envelope, priority)
            self._done(source, build, mailer, envelope)
            return envelope, result

    def _done(
        self,
        source: Message | dict[str, Any],
        build: Mapping[str, Any],
        mailer: postbud.Mailer,
        envelope: postbud.Envelope,
    ) -> None:
        if isinstance(source, Message):
            source.msgId = envelope.message_id  # as Flask-Mail's msgId, once it is known
        s = mailer.settings
        sender = build.get("sender") or s.sender or s.username
        self._recorder.add(source, envelope.data, envelope.message_id, sender)
