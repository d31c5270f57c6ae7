"""Error alerts for Flask apps (``POSTBUD_ALERTS_TO``): being built."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from ._state import PostbudState

__all__ = ["install_alerts"]


def install_alerts(app: Flask, state: PostbudState) -> None:
    """Turn on error alerts for ``app`` when its config asks for them (not yet)."""
