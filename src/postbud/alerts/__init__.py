"""Error alerts: ``AlertHandler`` for ``logging`` and ``alert_on_crash()`` for scripts."""

from __future__ import annotations

from ._crash import alert_on_crash
from ._handler import AlertHandler

__all__ = ["AlertHandler", "alert_on_crash"]
