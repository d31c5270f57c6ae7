"""``flask postbud ...``: the app's postbud commands, through Flask's click group."""

from __future__ import annotations

from flask.cli import AppGroup

__all__ = ["postbud_group"]

postbud_group = AppGroup(
    "postbud", help="postbud: check the app's Gmail settings, send a test mail, see the outbox."
)
