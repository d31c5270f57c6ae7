"""MIME parts written by hand: headers, text and binary parts, multiparts, files.

Why the bytes are written here rather than by ``EmailMessage.as_bytes()``: the modern
``email`` API parses every header into a tree when it is set and refolds the tree when
it is written, about 0.3 ms per small message, which is more than the whole SMTP round
trip on a reused connection. The common case (ASCII headers that fit on a line, text
and HTML bodies) is plain string work, and the tests parse every message back with the
stdlib and require zero defects.

Why header values are encoded here too, not by the stdlib's folder: up to Python 3.12
that folder decodes text that merely looks like an RFC 2047 encoded word and writes what
it decoded, CR LF included (header and body injection, the CVE-2024-6923 class); it
turns the comma after a long non-ASCII display name into ``=?utf-8?q?=2C?=`` (the other
recipients vanish); and what it does differs by patch release. postbud relies on no
patch level, so it writes every header by these rules, on every Python:

- unstructured text (Subject, custom headers): a word that is printable (ASCII unless
  SMTPUTF8) and holds no ``=?`` is written as it is; other words, with the blanks
  between them, go into encoded words. So ``=?utf-8?q?P?=`` arrives as that text, and
  control characters arrive encoded, never raw;
- addresses: each display name by itself (atoms, a quoted string or encoded words), the
  commas between addresses always plain;
- file names: a quoted string, or RFC 2231 (percent-encoded UTF-8) when that is unsafe;
- then ``check_header_block`` scans the lines of the result (no bare CR or LF, every
  continuation line starts with a blank, one field per header, at most 998 octets):
  a line scan, not a re-parse, so building stays cheap.

This module is longer than ~350 lines because the header encoder and the parts that
use it are one job: they change together.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import mimetypes
import os
import re
import secrets
from collections.abc import Iterable, Sequence

from postbud._address import check_no_breaks, control_character
from postbud.errors import InvalidMessageError

__all__ = [
    "address_header",
    "attachment_part",
    "binary_part",
    "check_field",
    "check_header_block",
    "header",
    "inline_part",
    "multipart",
    "parameter_header",
    "text_part",
]

_MAX_LINE = 998  # RFC 5322: octets per line, CRLF excluded
_LINE = 78  # RFC 5322's recommended line length; RFC 2047 wants lines with encoded words short
_EW_ROOM = 75 - len("=?utf-8?q??=")  # encoded text in one encoded word (RFC 2047: 75 at most)
_BLANK_RUN = 40  # a longer run of blanks goes into an encoded word with its neighbours
_WORDS = re.compile(r"[ \t]+|[^ \t]+")
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ATOMS = re.compile(f"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_ATOMS_UTF8 = re.compile(f"[{_ATEXT}\x80-\U0010ffff]+(?: [{_ATEXT}\x80-\U0010ffff]+)*")
# RFC 2047 section 5 (3): the characters that may stand for themselves in a "Q" encoded
# word wherever it is; the rest (and "=", "?", "_") are written =XX, the space "_".
_Q_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
_Q = tuple(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256))
# RFC 2231 attribute-char: what a parameter value may hold unencoded; the rest is %XX.
_ATTR_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
_PCT = tuple(chr(b) if b in _ATTR_SAFE else f"%{b:02X}" for b in range(256))
# An empty line, or one of blanks only: it would end the header block for some parsers.
_BLANK_LINE = re.compile(rb"\r\n[ \t]*\r\n")


def _plain(text: str, utf8: bool) -> bool:
    """May ``text`` go into a header as it is? Printable, ASCII unless SMTPUTF8, and
    nothing a reader would decode as an encoded word."""
    return (utf8 or text.isascii()) and text.isprintable() and "=?" not in text


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Lines:
    """Greedy folding: a piece goes on the current line while the line stays within 78
    characters; otherwise the blanks before it start the next line."""

    __slots__ = ("done", "line", "start")

    def __init__(self, name: str) -> None:
        self.done: list[str] = []
        self.line = name + ":"
        self.start = len(self.line)

    def add(self, sep: str, text: str) -> None:
        # Without a blank before it (a group's colon), ``text`` cannot start a line: a
        # line must start with one to continue the field.
        if sep and len(self.line) + len(sep) + len(text) > _LINE and len(self.line) > self.start:
            self.done.append(self.line)
            self.line = ""
        self.line += sep + text

    def add_encoded(self, sep: str, text: str, phrase: bool) -> None:
        """``text`` as encoded words (UTF-8, "Q" or "B", whichever is shorter).

        Readers join adjacent encoded words and drop the blanks between them, so a word
        ends at a character boundary; in a display name it ends after a space where it
        can (Python's parser keeps the blank between encoded words in a phrase).
        """
        data = [c.encode() for c in text]
        q_cost = [sum(len(_Q[b]) for b in c) for c in data]
        # What is left to encode from character i on, in O(1) (not a sum per word).
        q_left = list(itertools.accumulate(reversed(q_cost), initial=0))[::-1]
        b_left = list(itertools.accumulate(reversed([len(c) for c in data]), initial=0))[::-1]
        quoted = q_left[0] <= (b_left[0] + 2) // 3 * 4
        i, n = 0, len(text)
        while i < n:
            room = _LINE - len(self.line) - len(sep) - 12
            rest = q_left[i] if quoted else (b_left[i] + 2) // 3 * 4
            if room < min(16, rest) and len(self.line) > self.start:
                self.done.append(self.line)
                self.line = ""
                room = _LINE - len(sep) - 12
            room = max(min(room, _EW_ROOM), 12)
            j, size = i, 0
            while j < n:
                grown = size + (q_cost[j] if quoted else len(data[j]))
                if j > i and (grown if quoted else (grown + 2) // 3 * 4) > room:
                    break
                size, j = grown, j + 1
            if phrase and j < n and " " in text[i + 1 : j]:
                j = text.rindex(" ", i + 1, j) + 1
            chunk = b"".join(data[i:j])
            if quoted:
                self.line += f"{sep}=?utf-8?q?{''.join(_Q[b] for b in chunk)}?="
            else:
                self.line += f"{sep}=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?="
            sep, i = " ", j

    def text(self) -> str:
        return "\r\n".join([*self.done, self.line]) + "\r\n"


def header(name: str, value: str, utf8: bool) -> str:
    """One unstructured header (Subject, a custom header), encoded and folded.

    Blanks around the value are dropped (readers drop them too); nothing else changes.
    """
    if (
        value.isascii()
        and value.isprintable()
        and "=?" not in value
        and len(name) + len(value) < 77
    ):
        return f"{name}: {value}\r\n"
    tokens = _WORDS.findall(value.strip(" \t"))  # words at even places, blanks at odd
    limit = _MAX_LINE - max(len(name) + 2, _BLANK_RUN)  # a plain word fits any line
    encode = [
        len(t) > _BLANK_RUN if i % 2 else not (_plain(t, utf8) and len(t.encode()) <= limit)
        for i, t in enumerate(tokens)
    ]
    for i in range(1, len(tokens) - 1, 2):  # a long blank run is encoded with both neighbours
        if encode[i]:
            encode[i - 1] = encode[i + 1] = True
    for i in range(1, len(tokens) - 1, 2):  # readers drop blanks between encoded words
        encode[i] = encode[i] or (encode[i - 1] and encode[i + 1])
    lines = _Lines(name)
    sep, i = " ", 0
    while i < len(tokens):
        if not encode[i]:
            if i % 2:
                sep = tokens[i]
            else:
                lines.add(sep, tokens[i])
            i += 1
            continue
        j = i
        while j < len(tokens) and encode[j]:
            j += 1
        lines.add_encoded(sep, "".join(tokens[i:j]), phrase=False)
        i = j
    return lines.text()


Mailbox = tuple[str, str]  # (display name, addr-spec)


def address_header(
    name: str, mailboxes: Iterable[Mailbox | tuple[str, Sequence[Mailbox]]], utf8: bool
) -> str:
    """An address header (From, To, Cc, ...) of (display name, addr-spec) pairs, and of
    groups, given as (group name, [(display name, addr-spec), ...]) pairs
    (``Team: a@x, b@y;``, ``undisclosed-recipients:;``).

    Each display name and group name is written by itself: as atoms, as a quoted string,
    or as encoded words when it is not plain (or too long for a line); the commas,
    colons and semicolons between them are plain text outside any encoded word, so
    every recipient stays in the header.
    """
    items = list(mailboxes)
    simple = []
    for display, spec in items:
        if not isinstance(spec, str):
            break
        if not display:
            simple.append(spec)
        elif _plain(display, False) and len(display) <= 60:
            simple.append(f"{display if _ATOMS.fullmatch(display) else _quoted(display)} <{spec}>")
        else:
            break
    else:
        text = ", ".join(simple)
        if len(name) + len(text) < 77:
            return f"{name}: {text}\r\n"
    lines = _Lines(name)
    for n, (display, spec) in enumerate(items):
        end = "," if n + 1 < len(items) else ""
        if isinstance(spec, str):
            _mailbox(lines, display, spec, end, utf8)
            continue
        # A group: its name, a colon (after a blank when the name ends in an encoded
        # word: readers want one there), its mailboxes, a semicolon.
        encoded = _phrase(lines, display, utf8)
        members = list(spec)
        lines.add(" " if encoded else "", ":" if members else ":;" + end)
        for k, (box_name, box_spec) in enumerate(members):
            last = k + 1 == len(members)
            _mailbox(lines, box_name, box_spec, ";" + end if last else ",", utf8)
    return lines.text()


def _phrase(lines: _Lines, display: str, utf8: bool) -> bool:
    """Write a display name or group name; True if it ended in encoded words."""
    words = display.split(" ")
    if _plain(display, utf8) and max(map(len, words)) <= 76:
        if (_ATOMS_UTF8 if utf8 else _ATOMS).fullmatch(display):
            for word in words:
                lines.add(" ", word)
            return False
        if len(_quoted(display)) <= 76:
            lines.add(" ", _quoted(display))
            return False
    lines.add_encoded(" ", display, phrase=True)
    return True


def _mailbox(lines: _Lines, display: str, spec: str, end: str, utf8: bool) -> None:
    if display:
        _phrase(lines, display, utf8)
        lines.add(" ", f"<{spec}>{end}")
    else:
        lines.add(" ", spec + end)


def parameter_header(name: str, value: str, params: Iterable[tuple[str, str]]) -> str:
    """A MIME header with parameters (``Content-Disposition: attachment; filename=...``).

    ``value`` and the parameter names must be tokens (the caller's). A parameter value
    goes as a quoted string when it is printable ASCII and holds no ``=?`` (a boundary
    always); otherwise as RFC 2231 percent-encoded UTF-8, in sections of a line each,
    each ending at a character boundary (parsers decode each section by itself).
    """
    lines = _Lines(name)
    items = list(params)
    lines.add(" ", value + (";" if items else ""))
    for n, (key, text) in enumerate(items):
        end = ";" if n + 1 < len(items) else ""
        # Printable ASCII goes as a quoted string, however long (a line may be 998):
        # many MIME readers know no RFC 2231 for a boundary, or for a plain file name.
        # A boundary is never encoded ("=?" is legal in one, and readers do not decode
        # it); other values holding "=?" are, as some readers decode those.
        plain = _plain(text, False) or (key.lower() == "boundary" and text.isprintable())
        # A value in quotes of its own ('""', '"x"') would be unquoted twice by the
        # stdlib's get_filename() (found by the fuzz test): it goes encoded.
        quoted_already = len(text) > 1 and text[0] == text[-1] == '"'
        if plain and not quoted_already and text.isascii() and len(_quoted(text)) <= 900:
            lines.add(" ", f"{key}={_quoted(text)}{end}")
            continue
        sections = [""]
        for char in text:
            piece = "".join(_PCT[b] for b in char.encode())
            if len(sections[-1]) + len(piece) > 60:
                sections.append("")
            sections[-1] += piece
        if len(sections) == 1:
            lines.add(" ", f"{key}*=utf-8''{sections[0]}{end}")
            continue
        for k, section in enumerate(sections):
            start = "utf-8''" if k == 0 else ""
            lines.add(" ", f"{key}*{k}*={start}{section}{';' if k + 1 < len(sections) else end}")
    return lines.text()


def _fields(data: bytes) -> int:
    """How many header fields ``data`` holds, or -1 unless every line ends with CRLF,
    no CR or LF is bare, no line is empty or blanks only, none is longer than 998
    octets, and the first is not a continuation. Counting bytes, not parsing: a line
    that does not start with a blank starts a field, so an injected one is counted."""
    lines = data.count(b"\r\n")
    if (
        not data.endswith(b"\r\n")
        or data.count(b"\r") != lines
        or data.count(b"\n") != lines
        or data[:1] in (b" ", b"\t", b"\r")
        or _BLANK_LINE.search(data) is not None
        or (len(data) > _MAX_LINE and max(map(len, data.split(b"\r\n"))) > _MAX_LINE)
    ):
        return -1
    return lines - data.count(b"\r\n ") - data.count(b"\r\n\t")


def check_field(field: str, name: str, data: bytes) -> None:
    """Raise unless ``data`` is one header field ``name`` (see ``_fields``); ``field``
    names the argument in the message."""
    if _fields(data) != 1 or not data.startswith(name.encode("ascii", "replace") + b":"):
        raise InvalidMessageError(
            f"{field}: the {name!r} header would not be written as one header field "
            f"({data[:80]!r}...): a line break that is not folding, a line longer than "
            f"{_MAX_LINE} characters, or a bad header name. Nothing was sent."
        )


def check_header_block(block: bytes, names: Sequence[tuple[str, str]]) -> None:
    """Raise unless ``block`` is one field per (argument, header name) in ``names``."""
    if _fields(block) == len(names) and block.startswith(names[0][1].encode() + b":"):
        return
    lines = block.split(b"\r\n")
    starts = [k for k, line in enumerate(lines) if line[:1] not in (b" ", b"\t")]
    for (field, name), k, end in zip(names, starts, [*starts[1:], len(lines)], strict=False):
        check_field(field, name, b"\r\n".join(lines[k:end]) + b"\r\n")
    raise InvalidMessageError(
        f"The header block would not be written as {len(names)} header fields "
        f"({block[:200]!r}...). Nothing was sent."
    )


# -- parts ----------------------------------------------------------------------------


def text_part(content: str, subtype: str) -> bytes:
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    if text.isascii() and max(map(len, text.split("\n"))) <= _MAX_LINE:
        cte, body = "7bit", text.encode("ascii")
    else:
        cte, body = "quoted-printable", binascii.b2a_qp(text.encode("utf-8"), istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    ).encode("ascii") + body.replace(b"\n", b"\r\n")


def binary_part(
    data: bytes,
    mimetype: str,
    disposition: str,
    filename: str | None,
    content_id: str | None,
    field: str = "attachments",
) -> bytes:
    """A base64 part; ``mimetype``, ``filename`` and ``content_id`` are checked already."""
    names = [(field, "Content-Type"), (field, "Content-Disposition")]
    head = f"Content-Type: {mimetype}\r\n"
    if filename is not None:
        head += parameter_header("Content-Disposition", disposition, [("filename", filename)])
    else:
        head += f"Content-Disposition: {disposition}\r\n"
    if content_id is not None:
        head += f"Content-ID: <{content_id}>\r\n"
        names.append((field, "Content-ID"))
    head += "Content-Transfer-Encoding: base64\r\n"
    names.append((field, "Content-Transfer-Encoding"))
    block = head.encode("ascii")
    check_header_block(block, names)
    return block + b"\r\n" + base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    # "=_" cannot occur in quoted-printable or base64 output; the random part makes a
    # collision with 7bit text practically impossible.
    boundary = "=_" + secrets.token_hex(12)
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        # The CRLF before a delimiter belongs to the delimiter: each part keeps its own.
        out += [f"--{boundary}\r\n".encode(), part, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def _guess_type(filename: str, data: bytes | None = None) -> str:
    guessed = mimetypes.guess_type(filename, strict=False)[0]
    if guessed is None and data is not None:
        guessed = _sniff_image(data)
    return guessed or "application/octet-stream"


def _sniff_image(data: bytes) -> str | None:
    for magic, kind in (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"<svg" in data[:512]:
        return "image/svg+xml"
    return None


def _check_mimetype(field: str, mimetype: str) -> str:
    maintype, _, subtype = mimetype.partition("/")
    token_ok = all(c.isalnum() or c in "!#$&^_.+-" for c in maintype + subtype)
    if (
        not 0 < len(maintype) <= 127  # RFC 6838 4.2: at most 127 characters each
        or not 0 < len(subtype) <= 127
        or not token_ok
        or not mimetype.isascii()
    ):
        raise InvalidMessageError(
            f"{field}: {mimetype!r} is not a MIME type such as 'application/pdf' or 'image/png'."
        )
    return mimetype.lower()


def _check_file_name(field: str, filename: str) -> None:
    check_no_breaks(f"{field}: file name", filename)
    bad = control_character(filename)
    if bad:
        # RFC 2231 could carry them, but readers show them raw or refuse the name.
        raise InvalidMessageError(
            f"{field}: the file name {filename!r} holds the control character {bad!r}: "
            "file names cannot carry it; remove it."
        )
    if not filename.strip():
        raise InvalidMessageError(f"{field}: a file name is empty.")


def _read(field: str, path: str | os.PathLike[str]) -> tuple[str, bytes]:
    # A file name from a non-UTF-8 file system may hold surrogates: show what can be shown.
    name = os.path.basename(os.fspath(path)).encode("utf-8", "surrogateescape")
    try:
        with open(path, "rb") as fh:
            return name.decode("utf-8", "replace"), fh.read()
    except OSError as exc:
        raise InvalidMessageError(
            f"{field}: cannot read {os.fspath(path)!r} ({exc.strerror or exc})."
        ) from None


def attachment_part(item: object) -> bytes:
    if isinstance(item, (str, os.PathLike)):
        filename, data = _read("attachments", item)
        mimetype = _guess_type(filename)
    elif (
        isinstance(item, tuple)
        and len(item) in (2, 3)
        and isinstance(item[0], str)
        and isinstance(item[1], (bytes, bytearray, memoryview))
    ):
        filename, data = item[0], bytes(item[1])
        if len(item) == 3:
            if not isinstance(item[2], str):
                raise InvalidMessageError(
                    f"attachments: the MIME type of {filename!r} must be "
                    f"a string such as 'application/pdf'."
                )
            mimetype = _check_mimetype("attachments", item[2])
        else:
            mimetype = _guess_type(filename)
    else:
        raise InvalidMessageError(
            "attachments: each item must be a path or a (filename, bytes[, mimetype]) "
            f"tuple, got {type(item).__name__}."
        )
    _check_file_name("attachments", filename)
    return binary_part(data, mimetype, "attachment", filename, None)


def inline_part(cid: object, item: object) -> bytes:
    if (
        not isinstance(cid, str)
        or not cid
        or len(cid) > 200
        or any(c in cid for c in "<> \t")
        or control_character(cid)
        or "=?" in cid  # a reader would decode it: the html's cid: would not match
        or not cid.isascii()
    ):
        raise InvalidMessageError(
            f"inline: {cid!r} is not a usable Content-ID: use a short ASCII name without "
            "spaces, control characters or angle brackets, such as 'logo'."
        )
    field = f"inline[{cid!r}]"
    mimetype: str | None = None
    if isinstance(item, (str, os.PathLike)):
        filename, data = _read(field, item)
        mimetype = _guess_type(filename, data)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        filename, data = cid, bytes(item)
        mimetype = _sniff_image(data) or "application/octet-stream"
    elif (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], bytes)
        and isinstance(item[1], str)
    ):
        filename, data = cid, item[0]
        mimetype = _check_mimetype(field, item[1])
    else:
        raise InvalidMessageError(f"{field}: expected a path or bytes, got {type(item).__name__}.")
    _check_file_name(field, filename)
    return binary_part(data, mimetype, "inline", filename, cid, field)
