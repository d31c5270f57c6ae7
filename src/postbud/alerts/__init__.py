"""Error alerts: ``AlertHandler`` for ``logging`` and ``alert_on_crash()`` for scripts.

``Mail`` is what ``AlertHandler.render_mail()`` receives (for handlers of adapters
that change the subject or the bodies).
"""

from __future__ import annotations

from ._crash import alert_on_crash
from ._handler import AlertHandler
from ._policy import Mail

__all__ = ["AlertHandler", "Mail", "alert_on_crash"]
