"""Error alerts: ``AlertHandler`` for ``logging`` and ``alert_on_crash()`` for scripts.

``Mail`` is what ``AlertHandler.render_mail()`` receives (for handlers of adapters
that change the subject or the bodies); ``secret_name(name)`` says whether a key, header
or form field of that name holds a secret an alert never shows (for adapters that put a
request into an alert).
"""

from __future__ import annotations

from postbud._mask import secret_name

from ._crash import alert_on_crash
from ._handler import AlertHandler
from ._policy import Mail

__all__ = ["AlertHandler", "Mail", "alert_on_crash", "secret_name"]
