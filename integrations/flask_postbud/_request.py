"""What a Flask alert shows of the request that failed, and what it hides.

The request is captured on the request's thread, from the alert handler's ``capture``
hook (once per kind of error and process: the first occurrence), because by the time the
handler's own thread renders the mail the request is gone. The capture is plain JSON
(it is stored with the alert state, in the spool when there is one), and it is masked
*here*, before it is stored:

- headers: ``Cookie``, ``Authorization`` and every header whose name looks secret
  (token, secret, session, api key, csrf, signature...) show ``********``;
- form fields: the same rule for their names (``password``, ``csrf_token``,
  ``card_number``...); the form is shown only when the view read it (reading a body
  on the error path could block on a slow client); JSON bodies are never shown;
- the URL: the values of secret-looking query parameters and a password in it;
- values are cut at ``MAX_VALUE`` characters, lists at ``MAX_ITEMS`` entries.

The user id comes from Flask-Login when the app uses it (``app.login_manager``), from
what it already loaded for this request (``g._login_user``) or else from the session
(``_user_id``): nothing is loaded from a database on the error path, and Flask-Login is
never imported here. The Mailer's own secrets are masked again when the mail is made.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import flask

from postbud.alerts import secret_name

__all__ = ["MASK", "capture_request", "with_request"]

MASK = "********"
MAX_VALUE = 500
MAX_ITEMS = 60
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The signature line of the mail core renders (text), and its footer paragraph (HTML).
_TEXT_FOOTER = "\n-- \n"
_HTML_FOOTER = '<p style="color:#777'
_HEAD = "text-align:left;padding:2px 12px 2px 0;color:#555;vertical-align:top"
_CELL = "padding:2px 0;font-family:Menlo,Consolas,monospace;white-space:pre-wrap"


def capture_request() -> dict[str, Any] | None:
    """The current request, masked and JSON-able; None outside a request."""
    if not flask.has_request_context():
        return None
    request = flask.request
    shown: dict[str, Any] = {
        "method": _clip(request.method),
        "url": _clip(_masked_url(request.url)),
        "endpoint": _clip(request.endpoint or "(no route matched)"),
        "remote_addr": _clip(request.remote_addr or ""),
        "user_agent": _clip(request.headers.get("User-Agent", "")),
        "headers": _pairs(request.headers.items()),
        "form": _form(request),
    }
    if shown["form"] is None and not request.content_length:
        shown["form"] = []  # no body: nothing to say about it
    user = _user_id()
    if user is not None:
        shown["user"] = user
    return shown


def with_request(
    text: str, page: str | None, shown: Mapping[str, Any], mask: Callable[[str], str]
) -> tuple[str, str | None]:
    """The text and HTML of a first alert with a "Request" section before the footer
    (``mask``: the Mailer's own secrets, had a header carried one)."""
    rows = [(k, mask(str(v))) for k, v in _rows(shown)]
    lists = [
        (title, [(mask(str(k)), mask(str(v))) for k, v in items]) for title, items in _lists(shown)
    ]
    width = max(len(k) for k, _ in rows)
    block = ["", "Request:", *(f"  {k + ':':<{width + 1}} {v}" for k, v in rows)]
    for title, items in lists:
        block += ["", f"{title}:", *(f"  {k}: {v}" for k, v in items)]
    text = _insert(text, text.rfind(_TEXT_FOOTER), "\n".join(block) + "\n")
    if page is None:
        return text, None
    parts = [_html_title("Request"), _html_table(rows)]
    for title, items in lists:
        parts += [_html_title(title), _html_table(items)]
    at = page.rfind(_HTML_FOOTER)
    return text, _insert(page, at if at >= 0 else page.rfind("</body>"), "\n".join(parts) + "\n")


# -- capture ----------------------------------------------------------------------------


def _clip(value: str) -> str:
    value = _CONTROL.sub("\ufffd", value)
    return value if len(value) <= MAX_VALUE else value[: MAX_VALUE - 1] + "…"


def _shown(name: str, value: Any) -> str:
    return MASK if secret_name(name) else _clip(str(value))


def _pairs(items: Any) -> list[list[str]]:
    found = []
    for n, (name, value) in enumerate(items):
        if n == MAX_ITEMS:
            found.append(["…", "(more not shown)"])
            break
        found.append([_clip(str(name)), _shown(str(name), value)])
    return found


def _form(request: flask.Request) -> list[list[str]] | None:
    """The form fields and file names, when the view parsed the body (else None)."""
    if "form" not in request.__dict__:  # werkzeug keeps the parsed form there
        return None
    fields = _pairs(request.form.items(multi=True))
    files = request.__dict__.get("files")
    if files:
        fields += [
            [_clip(str(k)), f"(a file: {_shown(str(k), f.filename)}, {_clip(str(f.mimetype))})"]
            for k, f in list(files.items(multi=True))[:MAX_ITEMS]
        ]
    return fields


def _masked_url(url: str) -> str:
    """``url`` with the values of secret-looking query parameters (and a password in
    it) masked; the rest is kept as the client sent it."""
    parts = urlsplit(url)
    if parts.password:
        url = url.replace(f":{parts.password}@", f":{MASK}@", 1)
    head, mark, query = url.partition("?")
    if not mark:
        return url
    query, hash_mark, fragment = query.partition("#")
    shown = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        shown.append(f"{name}={MASK}" if eq and secret_name(unquote_plus(name)) else item)
    return f"{head}?{'&'.join(shown)}{hash_mark}{fragment}"


def _user_id() -> str | None:
    """The logged-in user's id under Flask-Login, without loading the user."""
    if "flask_login" not in sys.modules:  # the app does not use Flask-Login
        return None
    if getattr(flask.current_app, "login_manager", None) is None:
        return None
    try:
        user = flask.g.get("_login_user")  # loaded by the view (current_user)
        if user is not None:
            if not getattr(user, "is_authenticated", False):
                return "(anonymous)"
            return _clip(str(user.get_id()))
        # What login_user() keeps in the session (this first error's response then
        # says "Vary: Cookie", as any response that read the session does).
        found = flask.session.get("_user_id")
        return None if found is None else _clip(str(found))
    except Exception as exc:  # the app's user class failed: the alert still goes out
        return f"(unknown: {type(exc).__name__})"


# -- rendering --------------------------------------------------------------------------


def _rows(shown: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("Method", shown.get("method", "")),
        ("URL", shown.get("url", "")),
        ("Endpoint", shown.get("endpoint", "")),
        ("Remote address", shown.get("remote_addr", "")),
        ("User agent", shown.get("user_agent", "")),
    ]
    if "user" in shown:
        rows.append(("User", shown["user"]))
    return [(k, str(v)) for k, v in rows]


def _lists(shown: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    form = shown.get("form")
    found = [("Headers", [(str(k), str(v)) for k, v in shown.get("headers") or []])]
    if form is None:
        found.append(("Form", [("(not shown)", "the view did not read the request body")]))
    elif form:
        found.append(("Form", [(str(k), str(v)) for k, v in form]))
    return found


def _insert(text: str, at: int, block: str) -> str:
    return text + block if at < 0 else text[:at] + block + text[at:]


def _html_title(title: str) -> str:
    return f'<p style="margin:12px 0 4px;font-weight:600">{html.escape(title)}</p>'


def _html_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f'<tr><th style="{_HEAD}">{html.escape(k)}</th>'
        f'<td style="{_CELL}">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    return f'<table style="border-collapse:collapse;margin:4px 0">{cells}</table>'
