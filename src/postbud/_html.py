"""Small escaped-HTML helpers for the mails postbud writes (alerts, ``postbud run``).

Every value is passed through ``html.escape``, so text from a log record or a job's
output shows as text, never as markup. Inline CSS only: mail clients strip ``<style>``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from html.parser import HTMLParser

from postbud._mask import clean

__all__ = ["html_grid", "html_page", "html_pre", "html_table", "html_to_text", "one_line"]

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


# -- HTML to plain text ----------------------------------------------------------------

# Elements that make a paragraph of their own: a blank line around them.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "main", "nav", "p", "pre", "section", "summary", "table",
    }
)  # fmt: skip
# Elements whose content is no text a reader sees.
_HIDDEN = frozenset({"head", "noscript", "script", "style", "svg", "template", "title"})
# Elements that never have an end tag.
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr"})


class _TextWriter(HTMLParser):
    """Collects the readable text of an HTML body (see ``html_to_text``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.breaks = 0  # line ends owed before the next text: 1 a line, 2 a paragraph
        self.gap = ""  # a space owed before the next text
        self.hidden = 0
        self.pre = 0
        self.lists: list[int | None] = []  # per open list: None for <ul>, else the next number
        self.links: list[tuple[str, int]] = []  # (href, where the link's text starts)
        self.cells = 0

    def write(self, text: str) -> None:
        if self.parts:
            if self.breaks:
                self.parts.append("\n" * self.breaks)
            elif self.gap and not self.parts[-1][-1:].isspace():
                self.parts.append(self.gap)
        self.breaks, self.gap = 0, ""
        self.parts.append(text)

    def end_line(self, lines: int) -> None:
        self.breaks = max(self.breaks, lines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        if self.hidden:
            return
        if tag == "br":
            self.breaks = min(self.breaks + 1, 2) if self.parts else 0
        elif tag in ("ul", "ol"):
            self.end_line(1 if self.lists else 2)
            self.lists.append(None if tag == "ul" else _number(dict(attrs).get("start")))
        elif tag == "li":
            self.end_line(1)
            number = self.lists[-1] if self.lists else None
            if number is not None:
                self.lists[-1] = number + 1
            indent = "  " * max(len(self.lists) - 1, 0)
            self.write(indent + ("- " if number is None else f"{number}. "))
        elif tag == "tr":
            self.end_line(1)
            self.cells = 0
        elif tag in ("td", "th"):
            self.gap = "  " if self.cells else self.gap
            self.cells += 1
        elif tag == "a":
            self.links.append(((dict(attrs).get("href") or "").strip(), len(self.parts)))
        elif tag == "img":
            alt = " ".join((dict(attrs).get("alt") or "").split())
            if alt:
                self.write(alt)
        elif tag in _BLOCKS:
            self.end_line(2)
            self.pre += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:  # <p/>, <script/>: closed at once
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
            return
        if self.hidden:
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.end_line(1 if self.lists else 2)
        elif tag == "li":
            self.end_line(1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = " ".join("".join(self.parts[start:]).split())
            target = href[7:] if href.lower().startswith("mailto:") else href
            if href and not href.lower().startswith(("#", "javascript:", "cid:")):
                if not shown:
                    self.write(target)
                elif target != shown:
                    self.gap = " "
                    self.write(f"({target})")
        elif tag in _BLOCKS:
            self.pre -= tag == "pre" and self.pre > 0
            self.end_line(2)

    def handle_data(self, data: str) -> None:
        if self.hidden or not data:
            return
        if self.pre:
            self.write(data)
            return
        words = " ".join(data.split())
        if data[0].isspace():
            self.gap = " "
        if words:
            self.write(words)
            if data[-1].isspace():
                self.gap = " "

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.parts).split("\n")]
        text = "\n".join(lines).strip("\n")
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return text


def _number(value: str | None) -> int:
    try:
        return int(value or 1)
    except ValueError:
        return 1


def html_to_text(markup: str) -> str:
    """The readable text of an HTML body, for the plain-text part of an HTML-only mail.

    Mail programs that show no HTML, and spam filters, expect a text alternative.
    Links become ``text (url)``; paragraphs, headings and tables are separated by a
    blank line, ``<br>`` ends a line, list items start with ``- `` (or their number),
    table rows are lines; ``<script>``, ``<style>`` and ``<head>`` are left out. Only
    the stdlib's ``html.parser``: no layout and no wrapping.
    """
    writer = _TextWriter()
    writer.feed(markup)
    writer.close()
    return writer.text()
