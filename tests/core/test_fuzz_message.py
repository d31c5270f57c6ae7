"""Property-based tests of the bytes postbud sends (issue 15).

For generated addresses, display names, subjects, bodies, header names and values,
attachment names and bytes, and compat32 and modern messages for ``send_message()``,
postbud either refuses the input with an ``InvalidMessageError`` that names the argument,
or the bytes it would send parse back (``email.policy.default``) with zero defects in
every part, exactly the headers given plus those postbud adds (From, Date, Message-ID,
MIME-Version, Content-*), addresses equal as (display name, addr-spec), and every other
value equal after ``strip()``.

``make test`` runs the derandomized "postbud-short" profile (conftest.py); ``make fuzz``
the random, longer "postbud-fuzz" one.

Two readings are the stdlib's and not postbud's, and the comparison allows for them:
runs of blanks in a display name compare as one (RFC 5322 3.2.2: they are one space
there), and where a display name needed more than one encoded word, Python's parser
keeps the blank between them (RFC 2047 6.2 says to drop it, and mail clients do), so
such names compare without blanks.
"""

from __future__ import annotations

import email
import mimetypes
import re
from collections.abc import Callable, Sequence
from email import policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address as StdAddress
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeVar

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from postbud import ConfigurationError, InvalidMessageError  # noqa: E402
from postbud._message import build_message  # noqa: E402
from postbud._ready import envelope_from_message  # noqa: E402

pytestmark = pytest.mark.fuzz

ME = "me@gmail.com"
T = TypeVar("T")

# -- strategies -------------------------------------------------------------------------

# What broke headers before, or could: encoded words (valid, double-encoded, broken),
# what an injection needs, the specials of address and parameter syntax, blanks, control
# characters, Unicode line breaks and text outside ASCII.
TRICKY = [
    "=?utf-8?q?=0D=0A?=",
    "=?utf-8?q?P?=",
    "=?UTF-8?B?SGk=?=",
    "=?iso-8859-1?q?=E9?=",
    "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0D=3D0A=3F=3D?=",
    "=?utf-8?q?=1C?=",
    "=?",
    "?=",
    "=?utf-8?q?",
    "=?x?y?z?=",
    "Reply-To: x@attacker.example",
    ",",
    ";",
    ":",
    '"',
    "\\",
    "<",
    ">",
    "@",
    "(",
    ")",
    "[",
    "]",
    ".",
    "_",
    "%",
    "'",
    " ",
    "   ",
    "\t",
    "\x01",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1c",
    "\x1f",
    "\x7f",
    "\x85",
    "\xa0",
    "\u2028",
    "\u200b",
    "ü",
    "Grüße",
    "日本語",
    "\U0001f600",
    "e\u0301",
]


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, else ``odd`` (one_of() would draw each half the time)."""
    return st.integers(0, 3).flatmap(lambda i: odd if i == 3 else usual)


# Line breaks and NUL are refused everywhere in a header: rarer, so that most examples
# get as far as the bytes.
BREAKS = ["\r\n", "\n", "\r", "\0", "a\r\n b"]
any_char = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0")
chars = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0x01, max_codepoint=0x1F, exclude_characters="\r\n"),
    any_char,
)
pieces = st.one_of(
    st.sampled_from(TRICKY),
    st.text(chars, min_size=1, max_size=12),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["ü", "x", "a ", "\u65e5", " "]),
        st.integers(1, 90),
    ),
)
clean_texts = st.lists(pieces, max_size=8).map("".join)
texts = mostly(
    clean_texts,
    st.one_of(
        st.lists(st.one_of(pieces, st.sampled_from(BREAKS)), max_size=8).map("".join),
        st.text(max_size=30),  # anything, surrogates included (refused as not Unicode)
    ),
)
# Names as people write them: mostly printable, now and then anything.
names = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z .'-]{0,30}", fullmatch=True),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=30),
    clean_texts,
)

plain_locals = st.from_regex(r"[a-z0-9][a-z0-9_+-]{0,15}", fullmatch=True)
local_parts = mostly(
    plain_locals,
    st.one_of(
        st.sampled_from(['"odd local"', "jürgen", "ops+tag", "o'brien", "a..b", "=?utf-8?q?x?="]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10),
    ),
)
plain_domains = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\.(com|org|example|de)", fullmatch=True
)
domains = mostly(
    st.one_of(plain_domains, st.sampled_from(["bücher.de", "xn--bcher-kva.de"])),
    st.sampled_from(["localhost", "[1.2.3.4]", "exa_mple.com"]),
)
display_names = st.one_of(
    st.just(""),
    mostly(names, texts),
    st.sampled_from(
        [
            "Jürgen Groß",
            "Müller, Anna",
            "a" * 40 + "ü",
            "Александр Сергеевич Пушкин Александр",
            "Пушкин" * 12,
            'Ann "the" Ops',
            "=?utf-8?q?P?=",
            "Ops (night)",
        ]
    ),
)


def _format(parts: tuple[str, str, str, str]) -> str:
    name, local, domain, style = parts
    spec = f"{local}@{domain}"
    if not name or style == "bare":
        return spec
    if style == "quoted":
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{spec}>'
    if style == "formataddr" and spec.isascii():
        return email.utils.formataddr((name, spec))
    return f"{name} <{spec}>"


addresses = st.tuples(
    display_names,
    local_parts,
    domains,
    st.sampled_from(["bare", "quoted", "quoted", "formataddr", "formataddr", "raw"]),
).map(_format)
address_lists = st.one_of(
    st.lists(addresses, max_size=4),
    st.lists(addresses, min_size=1, max_size=4).map(", ".join),
)


def _group(parts: tuple[str, list[str]]) -> str:
    name, members = parts
    if email.utils.quote(name) != name or any(c in name for c in '()<>@,;:".[]'):
        name = f'"{email.utils.quote(name)}"'
    return f"{name}: {', '.join(members)};"


# Groups ("Team Zoë: a@x, b@y;", "undisclosed-recipients:;") and mailboxes mixed.
group_lists = st.lists(
    st.one_of(
        st.tuples(
            st.one_of(names, st.sampled_from(["Team Zoë", "undisclosed-recipients", "Ops, EU"])),
            st.lists(addresses, max_size=3),
        ).map(_group),
        addresses,
    ),
    min_size=1,
    max_size=3,
).map(", ".join)
few_addresses: st.SearchStrategy[list[str]] = st.one_of(
    st.just([]), st.lists(addresses, max_size=2)
)
file_names = st.one_of(
    names.filter(str.strip),
    texts,
    st.sampled_from(
        [
            "report.pdf",
            "résumé.pdf",
            "=?utf-8?q?P?=.txt",
            'a"b\\c.txt',
            " lead.txt",
            "x" * 200 + ".txt",
            "日本語のファイル名.txt" * 3,
        ]
    ),
)
mime_types = mostly(
    st.one_of(
        st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,12}", fullmatch=True),
        st.sampled_from(["text/plain", "application/pdf", "Image/PNG"]),
    ),
    st.one_of(st.sampled_from(["pdf", "a/b/c", "x/" + "y" * 130]), texts),
)
attachments = st.lists(
    st.one_of(
        st.tuples(file_names, st.binary(max_size=64)),
        st.tuples(file_names, st.binary(max_size=64), mime_types),
    ),
    max_size=3,
)
content_ids = mostly(st.from_regex(r"[A-Za-z0-9.@_-]{1,12}", fullmatch=True), texts)
inline = st.dictionaries(content_ids, st.binary(max_size=64), max_size=2)
bodies = st.one_of(st.none(), texts, st.text(chars, max_size=1500), st.just("x" * 1200))
header_names = st.one_of(
    st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
    st.sampled_from(
        [
            "Sender",
            "Resent-To",
            "Resent-Cc",
            "Resent-From",
            "Disposition-Notification-To",
            "Date",
            "Message-ID",
            "Resent-Date",
            "Resent-Bcc",
            "Auto-Submitted",
            "List-Unsubscribe",
            "Content-ID",
            "Keywords",
            "In-Reply-To",
            "Subject",
            "To",
            "X-Bad Name",
            "",
            "Ünï",
            "X-" + "n" * 100,
        ]
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
)
ADDRESS_HEADERS = {"sender", "resent-to", "resent-cc", "resent-from", "resent-sender"}
ADDRESS_HEADERS |= {"disposition-notification-to"}
DATE_HEADERS = {"date", "resent-date", "orig-date"}


def header_value(name: str) -> st.SearchStrategy[str]:
    key = name.lower()
    if key in ADDRESS_HEADERS:
        return st.one_of(
            address_lists.map(lambda a: a if isinstance(a, str) else ", ".join(a)), texts
        )
    if key in DATE_HEADERS:
        return st.one_of(st.datetimes(timezones=st.timezones()).map(format_datetime), texts)
    if key == "message-id":
        return st.one_of(st.from_regex(r"<[a-z0-9.]{1,20}@[a-z]{1,8}\.com>", fullmatch=True), texts)
    return texts


extra_headers = st.lists(
    header_names.flatmap(lambda n: st.tuples(st.just(n), header_value(n))),
    max_size=4,
    unique_by=lambda item: item[0].lower(),
)


# -- what "correct" means ------------------------------------------------------------------


def attempt(call: Callable[[], T], names: Sequence[str]) -> T | None:
    """``call()``, or None when postbud refused the input naming one of ``names``."""
    try:
        result = call()
    except (InvalidMessageError, ConfigurationError) as exc:
        hypothesis.event("refused")
        hypothesis.event(re.sub(r"'.*?'|\".*?\"", "_", str(exc))[:50])
        text = str(exc).lower()
        assert any(name.lower() in text for name in names), text
        cause = exc.__cause__
        if cause is not None:  # translated: it must come from the email package
            tb = cause.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            assert tb is not None and "/email/" in tb.tb_frame.f_code.co_filename, repr(cause)
        return None
    hypothesis.event("sent")
    return result


def read(data: bytes, utf8: bool) -> EmailMessage:
    """The message as a reader gets it; zero defects anywhere; CRLF lines of <= 998."""
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(map(len, data.split(b"\r\n"))) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    assert utf8 or head.isascii()
    # With SMTPUTF8 (RFC 6532) headers are UTF-8: the stdlib's bytes parser does not
    # know that (it flags the bytes and keeps surrogates), so such a head is read as text.
    if utf8:
        msg = email.message_from_string(data.decode("utf-8"), policy=policy.default)
    else:
        msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert part.defects == [], part.defects
        for name, value in part.items():
            # ... and a non-ASCII local part is legal then, which the stdlib flags.
            allowed = (NonASCIILocalPartDefect,) if utf8 else ()
            defects = [d for d in value.defects if not isinstance(d, allowed)]
            assert defects == [], (name, value, defects)
    return msg


def blanks(text: str) -> str:
    return " ".join(re.split(r"[ \t]+", text.strip()))


def no_blanks(text: str) -> str:
    return re.sub(r"[ \t]+", "", text)


def idna(domain: str) -> str:
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def given_addresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """The (display name, addr-spec) pairs the stdlib reads in what was given."""
    found = []
    for value in values:
        if value.strip():
            for a in policy.default.header_factory("To", value.strip()).addresses:
                spec = StdAddress(username=a.username, domain=idna(a.domain)).addr_spec
                found.append((a.display_name, spec))
    return found


def same_addresses(header: Any, want: list[tuple[str, str]], raw: bytes) -> None:
    same_pairs([(a.display_name, a.addr_spec) for a in header.addresses], want, raw)


def same_pairs(have: list[tuple[str, str]], want: list[tuple[str, str]], raw: bytes) -> None:
    if [(blanks(d), s) for d, s in have] == [(blanks(d), s) for d, s in want]:
        return
    assert b"?= =?" in raw or b"?=\r\n =?" in raw, (have, want)
    assert [(no_blanks(d), s) for d, s in have] == [(no_blanks(d), s) for d, s in want]


def groups_of(header: Any) -> list[tuple[str | None, list[tuple[str, str]]]]:
    return [
        (
            g.display_name,
            [
                (a.display_name, StdAddress(username=a.username, domain=idna(a.domain)).addr_spec)
                for a in g.addresses
            ],
        )
        for g in header.groups
    ]


def same_groups(header: Any, want: Any, raw: bytes) -> None:
    have = groups_of(header)
    assert [g[0] is None for g in have] == [g[0] is None for g in want], (have, want)
    for (name, boxes), (want_name, want_boxes) in zip(have, want, strict=True):
        if name is not None and blanks(name) != blanks(want_name):
            assert b"?= =?" in raw or b"?=\r\n =?" in raw, (have, want)
            assert no_blanks(name) == no_blanks(want_name)
        same_pairs(boxes, want_boxes, raw)


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def names_of(msg: Message) -> list[str]:
    return sorted(n.lower() for n in msg if not n.lower().startswith("content-"))


def with_added(names: list[str]) -> list[str]:
    """``names`` plus what send_message() adds when it is missing."""
    return sorted(names + [n for n in ("from", "date", "message-id") if n not in names])


def text_of(given: str) -> str:
    text = given.replace("\r\n", "\n").replace("\r", "\n")
    return text + "\n" if text and not text.endswith("\n") else text


def content(part: Any) -> Any:
    value = part.get_content()
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


# -- build_message -------------------------------------------------------------------------


@given(
    to=address_lists,
    cc=few_addresses,
    bcc=few_addresses,
    reply_to=few_addresses,
    sender=st.one_of(st.none(), addresses),
)
def test_addresses(
    to: str | list[str],
    cc: list[str],
    bcc: list[str],
    reply_to: list[str],
    sender: str | None,
) -> None:
    args: dict[str, Any] = {"to": to, "cc": cc, "bcc": bcc, "reply_to": reply_to, "sender": sender}
    env = attempt(
        lambda: build_message(mail_from=ME, subject="s", **args),
        ["to", "cc", "bcc", "reply_to", "sender"],
    )
    if env is None:
        return
    msg = read(env.data, env.smtputf8)
    raw = env.data.split(b"\r\n\r\n", 1)[0]
    want = {key: given_addresses(as_list(value or [])) for key, value in args.items()}
    want["sender"] = want["sender"] or [("", ME)]
    expected = ["date", "from", "message-id", "mime-version", "subject"]
    for key, header in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        if want[key]:
            expected.append(header.lower())
            same_addresses(msg[header], want[key], raw)
    assert names_of(msg) == sorted(expected)
    same_addresses(msg["From"], want["sender"], raw)
    rcpt = [s for key in ("to", "cc", "bcc") for _, s in want[key]]
    assert env.recipients == tuple(dict.fromkeys(rcpt))


@given(subject=texts, text=bodies, html=bodies)
def test_subject_and_bodies(subject: str, text: str | None, html: str | None) -> None:
    env = attempt(
        lambda: build_message(
            mail_from=ME, to="you@example.com", subject=subject, text=text, html=html
        ),
        ["subject", "text", "html"],
    )
    if env is None:
        return
    msg = read(env.data, env.smtputf8)
    assert names_of(msg) == ["date", "from", "message-id", "mime-version", "subject", "to"]
    assert msg["Subject"].strip() == subject.strip()
    plain, page = msg.get_body(("plain",)), msg.get_body(("html",))
    if text is not None or html is None:
        assert plain is not None and content(plain) == text_of(text or "")
    if html is not None:
        assert page is not None and content(page) == text_of(html)


@given(headers=extra_headers)
def test_custom_headers(headers: list[tuple[str, str]]) -> None:
    env = attempt(
        lambda: build_message(
            mail_from=ME, to="you@example.com", subject="s", headers=dict(headers)
        ),
        ["headers"],
    )
    if env is None:
        return
    msg = read(env.data, env.smtputf8)
    raw = env.data.split(b"\r\n\r\n", 1)[0]
    keys = {name.lower() for name, _ in headers if not name.lower().startswith("content-")}
    base = {"date", "from", "message-id", "mime-version", "subject", "to"}
    assert names_of(msg) == sorted(base | keys)
    for name, value in headers:
        key = name.lower()
        if key in ADDRESS_HEADERS:
            # Read the text as it was sent as an address list (the stdlib's registry
            # does not know Disposition-Notification-To, and would decode it whole).
            wire = email.message_from_string(env.data.decode(), policy=policy.compat32)[name]
            got = policy.default.header_factory("To", "".join(str(wire).splitlines()))
            same_addresses(got, given_addresses([value]), raw)
        elif key in DATE_HEADERS:
            assert msg[name].datetime == parsedate_to_datetime(value)
        else:
            assert str(msg[name]).strip() == value.strip()


@given(files=attachments, images=inline, html=mostly(st.just("<p>hi</p>"), st.none()))
# Found on Python 3.10 in CI: a name in quotes of its own ('""') was read back as ''.
@example(files=[('""', b"\xdcK"), ('"=?', b"p"), ('"x"', b"")], images={}, html=None)
def test_attachments_and_inline_images(
    files: list[tuple[Any, ...]], images: dict[str, bytes], html: str | None
) -> None:
    env = attempt(
        lambda: build_message(
            mail_from=ME,
            to="you@example.com",
            subject="s",
            text="t",
            html=html,
            attachments=files,
            inline=images,
        ),
        ["attachments", "inline", "html"],
    )
    if env is None:
        return
    msg = read(env.data, env.smtputf8)
    found = list(msg.iter_attachments())
    assert len(found) == len(files)
    # The modern policy's get_filename() unquotes a name in quotes of its own twice
    # ('"x"' -> 'x', '""' -> ''), however it is written; postbud sends such names
    # RFC 2231-encoded, which compat32 reads back as they were.
    names32 = [
        p.get_filename()
        for p in email.message_from_bytes(env.data, policy=policy.compat32).walk()
        if p.get_content_disposition() == "attachment"
    ]
    for n, (part, item) in enumerate(zip(found, files, strict=True)):
        name, data = item[0], item[1]
        kind = (
            item[2].lower()
            if len(item) == 3
            else (mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream")
        )
        got = part.get_filename()
        shown = name.strip()
        if len(shown) > 1 and shown[0] == shown[-1] == '"':
            got = names32[n]
            assert b"filename*" in env.data  # encoded, not a quoted string
        assert (got, part.get_content_type()) == (shown, kind)
        assert part.get_payload(decode=True) == data
    shown = {str(p["Content-ID"]): p for p in msg.walk() if p["Content-ID"] is not None}
    assert sorted(shown) == sorted(f"<{cid}>" for cid in images)
    for cid, data in images.items():
        assert shown[f"<{cid}>"].get_payload(decode=True) == data


# -- send_message --------------------------------------------------------------------------

COMPAT32_ADDRESSES = {"to", "cc", "from", "reply-to", "sender"}


@given(
    to=address_lists,
    cc=st.one_of(st.none(), group_lists),
    subject=texts,
    extra=st.lists(st.tuples(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True), texts), max_size=3),
    body=st.one_of(texts, st.text(chars, max_size=300)),
    files=st.lists(st.tuples(file_names, st.binary(max_size=32)), max_size=2),
    chosen=st.sampled_from([policy.SMTP, policy.default, policy.SMTPUTF8]),
)
def test_modern_messages(
    to: str | list[str],
    cc: str | None,
    subject: str,
    extra: list[tuple[str, str]],
    body: str,
    files: list[tuple[str, bytes]],
    chosen: Any,
) -> None:
    msg = EmailMessage(policy=chosen)
    try:  # what the stdlib refuses to build is not postbud's to send
        msg["To"] = ", ".join(as_list(to))
        if cc is not None:
            msg["Cc"] = cc
        msg["Subject"] = subject
        for name, value in extra:
            msg[name] = value
        msg.set_content(body)
        for name, data in files:
            msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        expected = {n: [str(v) for v in msg.get_all(n, [])] for n in msg}
        want_to = [
            (a.display_name, StdAddress(username=a.username, domain=idna(a.domain)).addr_spec)
            for a in msg["To"].addresses
        ]
        want_cc = groups_of(msg["Cc"]) if cc is not None else None
        names = [f.get_filename() for f in msg.iter_attachments()]
    except Exception:
        return
    env = attempt(
        lambda: envelope_from_message(msg, mail_from=ME),
        ["header", "to", "cc", "send_message()", "From"],
    )
    if env is None:
        return
    out = read(env.data, env.smtputf8)
    raw = env.data.split(b"\r\n\r\n", 1)[0]
    assert names_of(out) == with_added(names_of(msg))
    same_addresses(out["To"], want_to, raw)
    if want_cc is not None:
        same_groups(out["Cc"], want_cc, raw)
    for name, values in expected.items():
        if name.lower() not in ("to", "cc", "mime-version") and not name.lower().startswith(
            "content-"
        ):
            got = [str(v).strip() for v in out.get_all(name, [])]
            assert got == [v.strip() for v in values], name
    # The bodies from the bytes (a text parse would misread 8bit bodies).
    out = email.message_from_bytes(env.data, policy=policy.default)
    assert content(out.get_body(("plain",))) == content(msg.get_body(("plain",)))
    assert [f.get_filename() for f in out.iter_attachments()] == names
    assert [f.get_payload(decode=True) for f in out.iter_attachments()] == [d for _, d in files]


def compat32_reading(value: str) -> str:
    # compat32 writes an ASCII value as it is (it is the header's text; Django's
    # SafeMIMEText puts encoded words there itself) and encodes any other value.
    # A folded value ("a\r\n b") reads unfolded ("a b").
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", value)
    return str(policy.default.header_factory("X", unfolded)) if value.isascii() else unfolded


@given(
    to=address_lists,
    subject=mostly(names, texts),
    extra=st.lists(
        st.tuples(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True), mostly(names, texts)),
        max_size=3,
    ),
    body=st.one_of(texts, st.text(chars, max_size=300)),
    kind=st.sampled_from(["Message", "MIMEText", "MIMEMultipart"]),
    files=st.lists(st.tuples(file_names, st.binary(max_size=32)), max_size=2),
)
def test_compat32_messages(
    to: str | list[str],
    subject: str,
    extra: list[tuple[str, str]],
    body: str,
    kind: str,
    files: list[tuple[str, bytes]],
) -> None:
    msg: Message
    if kind == "Message":
        msg = Message()
        msg.set_payload(body)
    elif kind == "MIMEText":
        msg = MIMEText(body, "plain", "utf-8")
    else:
        msg = MIMEMultipart()
        msg.attach(MIMEText(body, "plain", "utf-8"))
        for name, data in files:
            msg.attach(MIMEApplication(data, Name=name))
    try:
        msg["To"] = ", ".join(as_list(to))
        msg["Subject"] = subject
        for name, value in extra:
            msg[name] = value
    except Exception:
        return
    env = attempt(
        lambda: envelope_from_message(msg, mail_from=ME), ["header", "to", "send_message()", "From"]
    )
    if env is None:
        return
    out = read(env.data, env.smtputf8)
    raw = env.data.split(b"\r\n\r\n", 1)[0]
    assert names_of(out) == with_added(names_of(msg))
    same_addresses(out["To"], given_addresses([", ".join(as_list(to))]), raw)
    assert str(out["Subject"]).strip() == compat32_reading(subject).strip()
    for name in {n.lower() for n, _ in extra}:
        got = [str(v).strip() for v in out.get_all(name, [])]
        assert got == [compat32_reading(v).strip() for n, v in extra if n.lower() == name], name
