"""flask_postbud: postbud for Flask 3.0 and later.

- ``Postbud(app)``, or ``postbud = Postbud()`` and ``postbud.init_app(app)`` in an app
  factory; config in ``app.config["POSTBUD_*"]`` (Flask-Mail's ``MAIL_*`` keys work too);
- ``postbud.send(to=..., subject=..., template="mail/welcome", context={...})`` (blocking)
  and ``postbud.submit(...)`` (through the outbox);
- Flask-Mail's surface: ``Mail`` (the same class), ``Message``, ``Attachment``,
  ``mail.send(msg)``, ``mail.connect()``, ``mail.record_messages()``, so a Flask-Mail
  app changes its import line and keeps working.

Importing it without Flask installed fails with the pip command that fixes it.
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from postbud.errors import MissingDependencyError

    raise MissingDependencyError(
        "flask_postbud needs Flask: pip install 'postbud[flask]'", package="flask"
    ) from exc

from ._extension import Postbud
from ._message import Attachment, Connection, Message
from ._state import ExtensionError, PostbudState

#: Flask-Mail's name for the extension: ``from flask_postbud import Mail``.
Mail = Postbud

__all__ = [
    "Attachment",
    "Connection",
    "ExtensionError",
    "Mail",
    "Message",
    "Postbud",
    "PostbudState",
]
