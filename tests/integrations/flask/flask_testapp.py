"""A Flask app as a project would write it with flask_postbud: an app factory, one
module-level ``Postbud()`` and views, a CLI command and a background job that send.

The tests load it through ``conftest.py`` (``app_factory``) and call ``create_app`` with
the config of a FakeGmail; every app made shares ``postbud``, as apps of one project do.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, current_app, request

from flask_postbud import Postbud

postbud = Postbud()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The factory: config first, then ``init_app`` (the order Flask's docs teach)."""
    app = Flask(__name__, root_path=os.path.dirname(os.path.abspath(__file__)))
    app.config.update(config or {})
    postbud.init_app(app)

    @app.post("/signup")
    def signup() -> str:
        # Blocking: the view answers once Gmail accepted the mail.
        result = postbud.send(
            to=request.form["email"],
            subject="Welcome",
            template="mail/welcome",
            context={"name": request.form["name"], "site": "Example"},
        )
        return result.message_id

    @app.post("/order")
    def order() -> str:
        # Non-blocking: the outbox delivers it after the response.
        return postbud.submit(
            to=request.form["email"],
            subject="Your receipt",
            template="mail/receipt",
            context={"name": request.form["name"], "total": "12.50 EUR"},
        )

    @app.post("/report")
    def report() -> str:
        # A background thread holds the app and passes it (no app context there).
        app_ = current_app._get_current_object()  # type: ignore[attr-defined]
        thread = threading.Thread(target=send_report, args=(app_, request.form["email"]))
        thread.start()
        thread.join()
        return "queued"

    @app.cli.command("send-digest")
    @click.argument("to")
    def send_digest(to: str) -> None:
        """Mail the digest (flask send-digest you@example.com)."""
        result = postbud.send(to=to, subject="Digest", text="Nothing new today.")
        click.echo(f"sent {result.message_id}")

    return app


def send_report(app: Flask, to: str) -> None:
    """A job run outside any app context, with a reference to the app."""
    postbud.send(
        to=to,
        subject="Report",
        template="mail/welcome",
        context={"name": "reporter", "site": "Reports"},
        app=app,
    )
