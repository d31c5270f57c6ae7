"""Mail sent outside a request: a thread has no app context, so it names the app.

The app given to the thread must be the app itself, not the ``current_app`` proxy: the
proxy only works in the context it came from, which ends with the request.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

from . import postbud


def send_report(app: Flask, to: str) -> None:
    """Runs in a thread (or a task queue's worker) with a reference to the app."""
    postbud.send(
        to=to,
        subject="Your weekly report",
        template="mail/report",
        context={"orders": 3},
        app=app,  # the app's config, its Mailer and its templates
    )


def start_report(to: str) -> threading.Thread:
    """Called in a view: hands the real app object to a new thread."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    thread = threading.Thread(target=send_report, args=(app, to))
    thread.start()
    return thread
