"""A small shop's Flask app: one Postbud for the project, registered by the app factory.

The config holds the account; the app password comes from the environment, so it is
never in the code. Tests pass their own config (TESTING, or a FakeGmail's keys).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_postbud import Postbud

postbud = Postbud()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        POSTBUD_USERNAME="me@gmail.com",
        POSTBUD_APP_PASSWORD=os.environ.get("GMAIL_APP_PASSWORD"),  # a Google app password
        POSTBUD_SENDER="My Shop <me@gmail.com>",
        POSTBUD_TIMEOUT=10,
    )
    app.config.update(config or {})
    postbud.init_app(app)

    from . import views

    app.register_blueprint(views.bp)
    return app
