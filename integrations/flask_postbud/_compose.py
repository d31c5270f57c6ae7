"""From ``send()``'s arguments to ``Mailer.build``'s: Flask-Mail messages, address
tuples and templates.

Only translation happens here (the postbud core builds and validates the mail):

- a Flask-Mail ``Message`` becomes keyword arguments (``send_kwargs``); what postbud does
  not do (``alts`` other than ``html``, ESMTP options, part headers) is refused by name;
- ``(name, address)`` tuples become ``"name" <address>`` strings;
- ``template="mail/welcome"`` renders ``mail/welcome.txt`` and ``mail/welcome.html`` with
  Flask's ``render_template`` (so context processors, the ``template_rendered`` signal
  and autoescaping for ``.html`` apply), in an app context of the sending app.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import formatdate
from typing import Any

import flask
import jinja2

import postbud

from ._message import Attachment, Message, Recipients, format_address

__all__ = ["RECORDED", "address_list", "app_context", "compose", "fields_of", "send_kwargs"]

#: The arguments of ``send()`` a recorded message keeps as the app gave them.
RECORDED = ("to", "subject", "text", "html", "cc", "bcc", "reply_to", "headers")


def compose(
    to: Recipients | Message, fields: dict[str, Any]
) -> tuple[Message | dict[str, Any], dict[str, Any]]:
    """(what ``record_messages`` keeps, ``Mailer.build``'s keyword arguments) for
    ``send(to, **fields)``; ``to`` may be a Flask-Mail ``Message`` (then nothing else)."""
    if isinstance(to, Message):
        extra = sorted(name for name, value in fields.items() if value is not None)
        if extra:
            raise TypeError(f"send(message) takes the Message alone, not {', '.join(extra)}.")
        return to, send_kwargs(to)
    if fields.get("subject") is None:
        raise TypeError("send() needs a subject (or a flask_postbud.Message).")
    given = {"to": to, **fields}
    source = {name: given.get(name) for name in RECORDED}
    template = given.pop("template")
    context = given.pop("context")
    if template is not None:
        if given["text"] is not None or given["html"] is not None:
            raise postbud.InvalidMessageError(
                "Give template= or text=/html=, not both: the template's .txt and .html "
                "files are the bodies."
            )
        given["text"], given["html"] = _render(template, context or {})
        source.update(text=given["text"], html=given["html"])
    elif context is not None:
        raise postbud.InvalidMessageError("context= is for template=: give both, or neither.")
    for name in ("to", "cc", "bcc", "reply_to"):
        given[name] = address_list(given[name], name) or None
    if given["sender"] is not None:
        given["sender"] = address_list(given["sender"], "sender")[0]
    return source, given


_FIELDS = (
    "subject",
    "text",
    "html",
    "template",
    "context",
    "cc",
    "bcc",
    "reply_to",
    "sender",
    "headers",
    "attachments",
    "inline",
)


def fields_of(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The mail's arguments of ``send``/``submit`` (their ``locals()``), by name."""
    return {name: arguments[name] for name in _FIELDS}


@contextmanager
def app_context(app: flask.Flask) -> Iterator[flask.Flask]:
    """``app``'s context, pushed when another one (or none) is current, so that
    ``render_template`` and context processors see the app that sends."""
    if flask.has_app_context() and flask.current_app._get_current_object() is app:  # type: ignore[attr-defined]
        yield app
        return
    with app.app_context():
        yield app


def _render(template: str, context: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``<template>.txt`` and ``<template>.html`` rendered (None for a missing one)."""
    env = flask.current_app.jinja_env
    names = (f"{template}.txt", f"{template}.html")
    found: list[str | None] = []
    for name in names:
        try:
            loaded = env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            if exc.name != name:  # an {% extends %} or {% import %} inside it is missing
                raise
            found.append(None)
        else:
            found.append(flask.render_template(loaded, **context))
    if found == [None, None]:
        raise jinja2.TemplatesNotFound(
            list(names),
            message=f"template={template!r}: neither {names[0]} nor {names[1]} is among "
            "the app's templates.",
        )
    return found[0], found[1]


def address_list(value: Recipients, where: str) -> list[str]:
    """Flask-Mail addresses as the strings ``Mailer.send`` takes."""
    if value is None:
        return []
    items: Iterable[Any] = [value] if isinstance(value, (str, tuple)) else value
    try:
        return [format_address(item, where) for item in items]
    except (TypeError, ValueError) as exc:
        raise postbud.InvalidMessageError(str(exc)) from None


def send_kwargs(message: Message) -> dict[str, Any]:
    """The keyword arguments of ``Mailer.build`` for a Flask-Mail ``Message``."""
    unsupported = sorted(set(message.alts) - {"html"})
    if unsupported:
        raise postbud.InvalidMessageError(
            f"alts: postbud sends a text and an HTML part only, not {', '.join(unsupported)}."
        )
    if message.mail_options or message.rcpt_options:
        raise postbud.InvalidMessageError(
            "mail_options and rcpt_options are not supported: Gmail ignores ESMTP options; "
            "leave them out."
        )
    headers = dict(message.extra_headers or {})
    if message.date is not None:
        headers["Date"] = formatdate(message.date)
    if message.msgId is not None:
        headers["Message-ID"] = message.msgId
    attachments: list[tuple[str, bytes] | tuple[str, bytes, str]] = []
    inline: dict[str, tuple[bytes, str] | bytes] = {}
    for item in message.attachments:
        _add_attachment(item, attachments, inline)
    reply_to = address_list(message.reply_to, "reply_to") if message.reply_to else None
    return {
        "to": address_list(message.recipients, "recipients"),
        "subject": message.subject,
        "text": message.body,
        "html": message.html,
        "cc": address_list(message.cc, "cc") or None,
        "bcc": address_list(message.bcc, "bcc") or None,
        "reply_to": reply_to,
        "sender": address_list(message.sender, "sender")[0] if message.sender else None,
        "headers": headers or None,
        "attachments": attachments or None,
        "inline": inline or None,
    }


def _add_attachment(
    item: Attachment,
    attachments: list[tuple[str, bytes] | tuple[str, bytes, str]],
    inline: dict[str, tuple[bytes, str] | bytes],
) -> None:
    data = item.data.encode("utf-8") if isinstance(item.data, str) else bytes(item.data)
    if item.disposition == "inline":
        cid = next((v for k, v in item.headers.items() if k.lower() == "content-id"), None)
        if cid is None:
            raise postbud.InvalidMessageError(
                f"attachments: the inline part {item.filename!r} needs headers="
                '{"Content-ID": "<name>"}, shown as <img src="cid:name"> in the HTML.'
            )
        name = cid.strip().removeprefix("<").removesuffix(">")
        inline[name] = (data, item.content_type) if item.content_type else data
        return
    if item.headers or item.disposition != "attachment":
        raise postbud.InvalidMessageError(
            f"attachments: {item.filename!r}: postbud writes the part's headers itself; "
            "give filename, content_type and data only."
        )
    if not item.filename:
        raise postbud.InvalidMessageError(
            "attachments: an attachment needs a filename (the name the recipient sees)."
        )
    attachments.append(
        (item.filename, data, item.content_type) if item.content_type else (item.filename, data)
    )
