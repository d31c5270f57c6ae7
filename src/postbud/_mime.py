"""MIME parts written by hand: headers, text and binary parts, multiparts, files.

Why the bytes are written here rather than by ``EmailMessage.as_bytes()``: the modern
``email`` API parses every header into a tree when it is set and refolds the tree when
it is written, about 0.3 ms per small message, which is more than the whole SMTP round
trip on a reused connection. The common case (ASCII headers that fit on a line, text
and HTML bodies) is plain string work; everything hard (RFC 2047 encoded words, RFC
2231 file names, folding long headers, SMTPUTF8) is still done by the stdlib's header
classes, and the tests parse every message back with the stdlib and require zero defects.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import secrets
from collections.abc import Sequence
from email import policy as email_policy

from postbud._address import check_no_breaks
from postbud.errors import InvalidMessageError

__all__ = [
    "attachment_part",
    "binary_part",
    "header",
    "inline_part",
    "multipart",
    "text_part",
]

_POLICY = email_policy.SMTP
_POLICY_UTF8 = email_policy.SMTPUTF8
_MAX_LINE = 998


def header(name: str, value: str, utf8: bool) -> str:
    if value.isascii() and len(name) + len(value) < 77:
        return f"{name}: {value}\r\n"
    policy = _POLICY_UTF8 if utf8 else _POLICY
    # header_factory(...).fold() encodes (RFC 2047/2231) and folds; policy.fold()
    # alone would pass short non-ASCII values through raw.
    folded = str(policy.header_factory(name, value).fold(policy=policy))
    # The stdlib starts a value that fits one line on the next ("Subject:\r\n Hello"),
    # which parsers then read with a leading space: keep its first part on the name's line.
    empty_first = f"{name}:\r\n "
    if folded.startswith(empty_first):
        folded = f"{name}: " + folded[len(empty_first) :]
    return folded


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
    utf8: bool,
) -> bytes:
    head = header("Content-Type", mimetype, utf8)
    if filename is not None:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        head += header("Content-Disposition", f'{disposition}; filename="{quoted}"', utf8)
    else:
        head += f"Content-Disposition: {disposition}\r\n"
    if content_id is not None:
        head += f"Content-ID: <{content_id}>\r\n"
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (head + "Content-Transfer-Encoding: base64\r\n\r\n").encode("utf-8") + body


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
    if not maintype or not subtype or not token_ok or not mimetype.isascii():
        raise InvalidMessageError(
            f"{field}: {mimetype!r} is not a MIME type such as 'application/pdf' or 'image/png'."
        )
    return mimetype.lower()


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


def attachment_part(item: object, utf8: bool) -> bytes:
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
    check_no_breaks("attachments: file name", filename)
    if not filename.strip():
        raise InvalidMessageError("attachments: a file name is empty.")
    return binary_part(data, mimetype, "attachment", filename, None, utf8)


def inline_part(cid: object, item: object, utf8: bool) -> bytes:
    if (
        not isinstance(cid, str)
        or not cid
        or any(c in cid for c in "<> \t\r\n\0")
        or not cid.isascii()
    ):
        raise InvalidMessageError(
            f"inline: {cid!r} is not a usable Content-ID: use a short "
            "ASCII name without spaces or angle brackets, such as 'logo'."
        )
    mimetype: str | None = None
    if isinstance(item, (str, os.PathLike)):
        filename, data = _read(f"inline[{cid!r}]", item)
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
        mimetype = _check_mimetype(f"inline[{cid!r}]", item[1])
    else:
        raise InvalidMessageError(
            f"inline[{cid!r}]: expected a path or bytes, got {type(item).__name__}."
        )
    return binary_part(data, mimetype, "inline", filename, cid, utf8)
