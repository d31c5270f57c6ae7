"""A Flask-Mail app, written for Flask-Mail 0.10 as its docs teach.

``test_flask_mail_switch.py`` runs this file as it is (with Flask-Mail) and with its
import line changed to ``from flask_postbud import Mail, Message``, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from flask_mail import Mail, Message

mail = Mail()


def create_app(config: Mapping[str, Any]) -> Flask:
    app = Flask(__name__, root_path=os.path.dirname(os.path.abspath(__file__)))
    app.config.update(config)
    mail.init_app(app)

    @app.post("/invite")
    def invite() -> str:
        msg = Message(
            "Invitation",
            recipients=[("Ann Example", "ann@example.com")],
            body="Join us on Friday.",
            html="<p>Join us on <b>Friday</b>.</p>",
            cc=["cc@example.com"],
            bcc=["hidden@example.com"],
            reply_to="events@example.com",
        )
        msg.attach("agenda.txt", "text/plain", b"18:00 drinks\n")
        mail.send(msg)
        return "sent"

    @app.post("/newsletter")
    def newsletter() -> str:
        with mail.connect() as conn:
            for address in request.form.getlist("to"):
                conn.send(Message("News", recipients=[address], body=f"Hi {address}"))
        return "sent"

    @app.post("/ping")
    def ping() -> str:
        mail.send_message("Ping", recipients=["ops@example.com"], body="pong")
        return "sent"

    return app
