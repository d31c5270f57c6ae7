"""Small escaped-HTML helpers for the mails postbud writes (alerts, ``postbud run``).

Every value is passed through ``html.escape``, so text from a log record or a job's
output shows as text, never as markup. Inline CSS only: mail clients strip ``<style>``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from postbud._mask import clean

__all__ = ["html_grid", "html_page", "html_pre", "html_table", "one_line"]

_CELL = "padding:4px 8px;border-bottom:1px solid #e5e5e5;vertical-align:top;text-align:left"
_HEAD = _CELL + ";color:#555;font-weight:600;white-space:nowrap"
_PRE = (
    "background:#f6f8fa;border:1px solid #ddd;padding:8px;font-size:12px;"
    "white-space:pre-wrap;word-break:break-word;font-family:Menlo,Consolas,monospace"
)


def one_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters (cut with an ellipsis)."""
    text = " ".join(clean(text).split())  # CR, LF, tabs, NUL... become single spaces
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def html_page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        + html.escape(title)
        + "</title></head>\n"
        + '<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;'
        + 'font-size:14px;color:#222;margin:0;padding:16px">\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def html_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f'<tr><th style="{_HEAD}">{html.escape(k)}</th>'
        f'<td style="{_CELL};white-space:pre-wrap">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    return f'<table style="border-collapse:collapse;margin:8px 0">{cells}</table>'


def html_pre(text: str) -> str:
    """A block of preformatted text (a traceback, command output), escaped."""
    return f'<pre style="{_PRE}">{html.escape(text)}</pre>'


def html_grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table with a header row (a digest's list of errors), every cell escaped."""
    head = "".join(f'<th style="{_HEAD}">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(c)}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;margin:8px 0"><tr>{head}</tr>{body}</table>'
