"""The text and HTML of alert mails: a first alert, a follow-up and a digest.

Everything that comes from a log record is escaped (``html.escape``) before it goes
into the HTML, so a message holding ``<a href=…>`` shows as text, never as a link.
The HTML uses inline CSS only and loads nothing (mail clients strip ``<style>`` and
block remote resources). Values were masked when the occurrence was described.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from postbud._html import html_grid, html_page, html_pre, html_table, one_line
from postbud.errors import ConfigurationError

from ._policy import Mail

__all__ = [
    "DEFAULT_SUBJECT",
    "SUBJECT_FIELDS",
    "check_template",
    "render",
]

DEFAULT_SUBJECT = "[{level}] {logger}: {message}"
SUBJECT_FIELDS = ("level", "logger", "message", "exc_type", "host")
MAX_SUBJECT = 200
#: A digest lists at most this many fingerprints (the counts of the rest are summed).
MAX_DIGEST_ROWS = 200


def check_template(template: str) -> None:
    """Raise ``ConfigurationError`` unless ``template`` formats with the known fields."""
    try:
        template.format_map(dict.fromkeys(SUBJECT_FIELDS, "x"))
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise ConfigurationError(
            f"subject: the template {template!r} cannot be used ({exc!s}); it may name "
            f"these fields: {', '.join('{' + f + '}' for f in SUBJECT_FIELDS)}."
        ) from None


def _subject(template: str, tag: str | None, detail: Mapping[str, Any], suffix: str) -> str:
    first_line = str(detail.get("message", "")).strip().split("\n", 1)[0]
    fields = {
        "level": detail.get("level", ""),
        "logger": detail.get("logger", ""),
        "message": first_line,
        "exc_type": detail.get("exc_type", ""),
        "host": detail.get("host", ""),
    }
    try:
        text = template.format_map(fields)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError):
        text = DEFAULT_SUBJECT.format_map(fields)  # "{message[0]}" of an empty message
    prefix = f"[{tag}] " if tag else ""
    return one_line(prefix + text, MAX_SUBJECT - len(suffix)) + suffix


def _utc(at: float | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    if at is None:
        return "?"
    return datetime.fromtimestamp(at, timezone.utc).strftime(fmt)


def _local(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))


def _fields(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    at = float(detail.get("at") or 0.0)
    rows = [
        ("Message", str(detail.get("message", ""))),
        ("Level", str(detail.get("level", ""))),
        ("Logger", str(detail.get("logger", ""))),
        ("Time", f"{_utc(at)} ({_local(at)} local)"),
        ("Where", str(detail.get("where", ""))),
        ("Host", str(detail.get("host", ""))),
        ("Process", f"{detail.get('process', '')} (pid {detail.get('pid', '?')})"),
        ("Thread", str(detail.get("thread", ""))),
        ("Command", str(detail.get("argv", ""))),
        ("Python", str(detail.get("python", ""))),
    ]
    extra = detail.get("extra") or {}
    rows.extend((f"extra: {k}", str(v)) for k, v in sorted(extra.items()))
    return rows


def _blocks(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (title, str(detail[key]))
        for title, key in (("Traceback", "traceback"), ("Stack", "stack"))
        if detail.get(key)
    ]


def _occurrence(mail: Mail, intro: str, footer: str) -> tuple[str, str]:
    rows = _fields(mail.detail)
    blocks = _blocks(mail.detail)
    text = [intro, ""]
    width = max(len(k) for k, _ in rows)
    text += [f"{k + ':':<{width + 1}} {v}" for k, v in rows]
    for title, block in blocks:
        text += ["", f"{title}:", block.rstrip()]
    text += ["", "-- ", footer]
    body = [
        f'<p style="margin:0 0 8px">{html.escape(intro)}</p>',
        html_table(rows),
    ]
    for title, block in blocks:
        body.append(f'<p style="margin:12px 0 4px;font-weight:600">{html.escape(title)}</p>')
        body.append(html_pre(block.rstrip()))
    body.append(f'<p style="color:#777;font-size:12px;margin-top:16px">{html.escape(footer)}</p>')
    return "\n".join(text) + "\n", html_page(intro, body)


def _headline(detail: Mapping[str, Any]) -> str:
    exc_type = str(detail.get("exc_type") or "")
    message = str(detail.get("message", ""))
    return f"{exc_type}: {message}" if exc_type else message


def _digest(mail: Mail, footer: str) -> tuple[str, str]:
    shown = mail.entries[:MAX_DIGEST_ROWS]
    rest = mail.entries[MAX_DIGEST_ROWS:]
    intro = (
        f"{mail.count} alert(s) of {len(mail.entries)} kind(s) between "
        f"{_utc(mail.since)} and {_utc(mail.last_at)} were collected into this digest "
        "instead of one mail each."
    )
    header = ("Count", "First", "Last", "Level", "Logger", "Message", "Where")
    lines = []
    for e in shown:
        d = e.detail
        lines.append(
            (
                str(e.total),
                _utc(e.first_at, "%m-%d %H:%M:%S"),
                _utc(e.last_at, "%m-%d %H:%M:%S"),
                str(d.get("level", "")),
                str(d.get("logger", "")),
                one_line(_headline(d), 160),
                str(d.get("where", "")),
            )
        )
    if rest:
        more = sum(e.total for e in rest)
        lines.append((str(more), "", "", "", "", f"… and {len(rest)} more kind(s)", ""))
    text = [intro, "", "Times are UTC.", ""]
    table = [header, *lines]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:  # the last column (Where) is not padded
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
        text.append("  ".join(cells).rstrip())
    text += ["", "-- ", footer]
    body = [
        f'<p style="margin:0 0 8px">{html.escape(intro)} Times are UTC.</p>',
        html_grid(header, lines),
        f'<p style="color:#777;font-size:12px;margin-top:16px">{html.escape(footer)}</p>',
    ]
    return "\n".join(text) + "\n", html_page(intro, body)


def render(
    mail: Mail,
    *,
    template: str,
    tag: str | None,
    cooldown: float,
    cap: int,
    intro: str | None = None,
    footer: str | None = None,
) -> tuple[str, str, str]:
    """(subject, text, html) of one alert mail (``intro``, ``footer``: other words)."""
    footer = footer or (
        f"Sent by postbud. Repeats of an error within {cooldown:g} s are counted and "
        f"reported in one follow-up; at most {cap} alert mail(s) an hour, the rest in an "
        "hourly digest. Counts are never dropped."
    )
    if mail.kind == "digest":
        prefix = f"[{tag}] " if tag else ""
        subject = one_line(
            f"{prefix}Alert digest: {mail.count} alert(s) of {len(mail.entries)} kind(s) "
            f"since {_utc(mail.since, '%H:%M UTC')}",
            MAX_SUBJECT,
        )
        text, page = _digest(mail, footer)
        return subject, text, page
    if mail.kind == "follow-up":
        since = _utc(mail.since, "%H:%M UTC")
        intro = (
            f"This error happened {mail.count} more time(s) since {since}, "
            f"the last at {_utc(mail.last_at)}. Details of the last occurrence:"
        )
        subject = _subject(template, tag, mail.detail, f" ({mail.count} more since {since})")
    else:
        intro = intro or (
            "An error was logged. Repeats in the next minutes are counted, not mailed."
        )
        subject = _subject(template, tag, mail.detail, "")
    text, page = _occurrence(mail, intro, footer)
    return subject, text, page
