"""A Flask app with error alerts, as a project would write it: an app factory, one
module-level ``Postbud()``, ``POSTBUD_ALERTS_TO`` in the config, and views that fail.

``test_flask_alerts.py`` loads it through ``conftest.load_module``; every app made shares
``app.logger`` (one import name), as apps of one project made by a factory do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request

from flask_postbud import Postbud

postbud = Postbud()


class User:
    """What a Flask-Login user has (``UserMixin``): an id, authenticated."""

    is_authenticated = True

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    def get_id(self) -> str:
        return str(self.user_id)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The factory: config first, then ``init_app``."""
    app = Flask(__name__, root_path=os.path.dirname(os.path.abspath(__file__)))
    app.config.update(config or {})
    postbud.init_app(app)

    @app.route("/checkout", methods=["GET", "POST"])
    def checkout() -> str:
        # The view reads its form, then a dependency fails: an unhandled exception.
        return charge(request.form.get("card_number", ""))

    @app.get("/orders/<int:order>")
    def order(order: int) -> str:
        return charge(str(order))

    @app.get("/refund")
    def refund() -> str:
        # A handled failure the app logs itself, and the request still succeeds.
        app.logger.error("refund failed: provider answered %s", request.args.get("code", "?"))
        return "refund queued"

    @app.post("/webhook")
    def webhook() -> str:
        # Fails before it reads the body.
        raise ValueError("unknown webhook sender")

    @app.get("/account")
    def account() -> str:
        g._login_user = User(17)  # what Flask-Login's current_user leaves for the request
        raise LookupError("no account row for user 17")

    return app


def charge(card: str) -> str:
    """The payment provider, down."""
    raise ConnectionError(f"payment provider unreachable (card ending {card[-4:]!r})")
