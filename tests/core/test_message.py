"""Message building: every shape DESIGN.md promises, parsed back by the stdlib with no
defects, and every mistake a user can make caught before any connection."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postbud import InvalidMessageError
from postbud._address import parse_address
from postbud._html import html_to_text
from postbud._message import (
    MAX_MESSAGE_SIZE,
    Envelope,
    build_message,
)
from postbud._ready import envelope_from_message
from postbud.testing import FakeGmail

ME = "me@gmail.com"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def build(**kwargs: Any) -> Envelope:
    kwargs.setdefault("mail_from", ME)
    kwargs.setdefault("to", "you@example.com")
    kwargs.setdefault("subject", "Hello")
    return build_message(**kwargs)


def parsed(envelope: Envelope) -> EmailMessage:
    assert b"\r\n" in envelope.data and b"\n" not in envelope.data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(envelope.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    defects = [d for part in msg.walk() for d in part.defects]
    assert defects == [], defects
    for name, value in msg.items():
        assert value.defects == (), (name, value.defects)
    return msg


def content(part: Any) -> Any:
    value = part.get_content()
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def test_text_only() -> None:
    env = build(text="Hi there\nsecond line")
    msg = parsed(env)
    assert msg.get_content_type() == "text/plain"
    assert content(msg) == "Hi there\nsecond line\n"
    assert msg["From"] == ME and msg["To"] == "you@example.com" and msg["Subject"] == "Hello"
    assert msg["Message-ID"] == env.message_id and env.message_id.endswith("@gmail.com>")
    assert msg["Date"].datetime.tzinfo is not None
    assert (env.mail_from, env.recipients, env.smtputf8) == (ME, ("you@example.com",), False)


def test_html_only_and_both() -> None:
    alone = parsed(build(html="<p>Hi</p>"))  # a text part is made from it: see the end
    assert [p.get_content_type() for p in alone.iter_parts()] == ["text/plain", "text/html"]
    msg = parsed(build(text="Hi", html="<p>Hi</p>"))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert content(msg.get_body(("html",))) == "<p>Hi</p>\n"


def test_no_body_is_an_empty_text_part() -> None:
    msg = parsed(build())
    assert msg.get_content_type() == "text/plain" and content(msg) == ""


def test_non_ascii_everywhere_is_encoded() -> None:
    env = build(
        to="Jürgen Groß <jurgen@example.com>",
        subject="Grüße aus Köln — ✓",
        text="Schöne Grüße\n" + "ä" * 2000,
        sender='"Müller, Anna" <me@gmail.com>',
    )
    assert env.data.isascii()  # RFC 2047 headers, quoted-printable body
    msg = parsed(env)
    assert msg["Subject"] == "Grüße aus Köln — ✓"
    assert msg["To"].addresses[0].display_name == "Jürgen Groß"
    assert msg["From"].addresses[0].display_name == "Müller, Anna"
    assert content(msg) == "Schöne Grüße\n" + "ä" * 2000 + "\n"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"


def test_long_ascii_lines_are_wrapped_safely() -> None:
    line = "x" * 5000
    msg = parsed(build(text=line, subject="s" * 300))
    assert content(msg) == line + "\n"
    assert msg["Subject"] == "s" * 300
    assert max(len(raw) for raw in build(text=line).data.split(b"\r\n")) <= 998


def test_leading_dots_and_bare_cr_survive() -> None:
    msg = parsed(build(text=".hidden\r\nnext\rlast"))
    assert content(msg) == ".hidden\nnext\nlast\n"


def test_bcc_only_in_the_envelope() -> None:
    env = build(to=["a@example.com", "B <b@example.com>"], cc="c@example.com", bcc="d@example.com")
    msg = parsed(env)
    assert env.recipients == ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    assert msg["Bcc"] is None and b"d@example.com" not in env.data
    assert msg["Cc"] == "c@example.com"


def test_duplicate_recipients_are_sent_once() -> None:
    env = build(to=["a@example.com", "a@example.com"], cc="a@example.com")
    assert env.recipients == ("a@example.com",)


def test_comma_separated_string() -> None:
    env = build(to="a@example.com, B <b@example.com>")
    assert env.recipients == ("a@example.com", "b@example.com")


def test_reply_to_and_extra_headers() -> None:
    msg = parsed(
        build(reply_to="help@example.com", headers={"X-Job": "nightly", "Auto-Submitted": "x"})
    )
    assert msg["Reply-To"] == "help@example.com"
    assert (msg["X-Job"], msg["Auto-Submitted"]) == ("nightly", "x")


def test_message_id_and_date_can_be_chosen() -> None:
    env = build(headers={"Message-ID": "<keep-1@gmail.com>", "Date": "Mon, 1 Jan 2024 0:00 +0000"})
    msg = parsed(env)
    assert env.message_id == msg["Message-ID"] == "<keep-1@gmail.com>"
    assert msg["Date"].datetime.year == 2024
    assert len(msg.get_all("Message-ID") or []) == 1 and len(msg.get_all("Date") or []) == 1


def test_message_id_uses_the_senders_domain() -> None:
    env = build(sender="Alerts <alerts@example.org>")
    assert env.message_id.endswith("@example.org>")
    assert env.mail_from == ME  # the envelope stays the authenticated account


def test_idna_domains_are_encoded() -> None:
    env = build(to="kunde@bücher.de")
    assert env.recipients == ("kunde@xn--bcher-kva.de",)
    assert parsed(env)["To"] == "kunde@xn--bcher-kva.de"
    assert not env.smtputf8


def test_non_ascii_local_part_needs_smtputf8() -> None:
    env = build(to="jürgen@example.com")
    assert env.smtputf8
    msg = email.message_from_bytes(env.data, policy=policy.default)
    assert msg["To"] == "jürgen@example.com"


def test_attachments_from_path_and_bytes(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    env = build(
        text="see attached",
        attachments=[
            report,
            ("data.bin", b"\0\1\2"),
            ("notes", b"hello", "text/markdown"),
            ("résumé.pdf", b"%PDF"),
        ],
    )
    msg = parsed(env)
    assert msg.get_content_type() == "multipart/mixed"
    files = list(msg.iter_attachments())
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("report.csv", "text/csv"),
        ("data.bin", "application/octet-stream"),
        ("notes", "text/markdown"),
        ("résumé.pdf", "application/pdf"),
    ]
    assert content(files[0]) == "a,b\n1,2\n"
    assert content(files[1]) == b"\0\1\2"


def test_inline_images_make_a_related_part(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    env = build(
        text="t",
        html='<img src="cid:logo"><img src="cid:chart">',
        inline={"logo": logo, "chart": PNG},
    )
    msg = parsed(env)
    assert msg.get_content_type() == "multipart/alternative"
    related = list(msg.iter_parts())[1]
    assert related.get_content_type() == "multipart/related"
    images = list(related.iter_parts())[1:]
    assert [(i["Content-ID"], i.get_content_type()) for i in images] == [
        ("<logo>", "image/png"),
        ("<chart>", "image/png"),
    ]
    assert content(images[1]) == PNG


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "bob@"}, "to: 'bob@' is not a valid email address"),
        ({"to": "not an address"}, "not an address\"' is not a valid email address"),
        ({"to": ["ok@example.com", "x@localhost"]}, "'localhost' is not a valid domain name"),
        ({"cc": "a@exa_mple.com"}, "cc: 'a@exa_mple.com': 'exa_mple.com' is not a valid domain"),
        ({"to": "Doe, John <j@x.com>"}, "If a display name has a comma, quote it"),
        ({"to": "friends: a@example.com;"}, "is a group (friends:...;)"),
        ({"to": "x@[1.2.3.4]"}, "address literals like [1.2.3.4] are not accepted"),
        ({"to": []}, "No recipient: give at least one address in to, cc or bcc."),
        ({"to": [42]}, "to: expected an address string, got int 42."),
        ({"bcc": "a@example.com\nX: y"}, "contains a line break (CR/LF) or NUL"),
        ({"subject": "Hi\r\nBcc: evil@example.com"}, "subject contains a line break (CR/LF)"),
        ({"subject": None}, "subject must be a string, got NoneType."),
        ({"text": b"bytes"}, "text must be a string, got bytes."),
        ({"headers": {"X-Evil": "a\r\nBcc: evil@example.com"}}, "headers['X-Evil'] contains a"),
        ({"headers": {"Bad Name": "x"}}, "'Bad Name' is not a valid header name"),
        ({"headers": {"To": "x@example.com"}}, "set 'To' with its own argument of send()"),
        ({"headers": {"Message-ID": "nope"}}, "Message-ID 'nope' must look like"),
        ({"headers": {"Message-ID": "<a\t@c>"}}, "must look like '<unique@domain>'"),
        ({"headers": {"Message-ID": "<a>b@c>"}}, "must look like '<unique@domain>'"),
        ({"headers": {"Date": "tomorrow"}}, "Date 'tomorrow' is not a date such as"),
        ({"headers": {"Sender": "not an address"}}, "headers['Sender']: "),
        ({"sender": "a@example.com, b@example.com"}, "sender: give one address, not 2."),
        ({"text": "caf\udce9"}, "text holds characters that are not valid Unicode"),
        ({"subject": "caf\udce9"}, "subject holds characters that are not valid Unicode"),
        ({"reply_to": "nobody"}, "reply_to: 'nobody' is not a valid email address"),
        ({"sender": "alerts"}, "sender: 'alerts' is not a valid email address"),
        ({"attachments": ["/no/such/file.pdf"]}, "attachments: cannot read '/no/such/file.pdf'"),
        ({"attachments": [("a.txt", "not bytes")]}, "each item must be a path or a (filename"),
        ({"attachments": [("a\r\nb.txt", b"x")]}, "file name contains a line break"),
        ({"attachments": [("a.txt", b"x", "pdf")]}, "'pdf' is not a MIME type"),
        ({"inline": {"logo": PNG}}, "inline images need an html body"),
        ({"html": "x", "inline": {"my logo": PNG}}, "'my logo' is not a usable Content-ID"),
        ({"html": "x", "inline": {"logo": 3}}, "inline['logo']: expected a path or bytes"),
    ],
)
def test_mistakes_are_caught_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        build(**kwargs)
    assert message in str(info.value)


def test_too_big_is_refused_before_connecting() -> None:
    with pytest.raises(InvalidMessageError, match=r"the server accepts at most 35,882,577"):
        build(attachments=[("big.bin", b"\0" * (MAX_MESSAGE_SIZE // 4 * 3 + 1000))])


def test_parse_address_cache_and_limits() -> None:
    assert parse_address("Me <ME@Gmail.com>").addr_spec == "ME@Gmail.com"
    assert parse_address('"odd local"@example.com').addr_spec == '"odd local"@example.com'
    with pytest.raises(InvalidMessageError, match="too long"):
        parse_address("x" * 65 + "@example.com")
    with pytest.raises(InvalidMessageError, match="holds 2 addresses"):
        parse_address("a@example.com, b@example.com")


def test_split_keeps_one_message_id() -> None:
    env = build(to=[f"u{i}@example.com" for i in range(250)])
    chunks = env.split(100)
    assert [len(c.recipients) for c in chunks] == [100, 100, 50]
    assert {c.message_id for c in chunks} == {env.message_id}
    assert {c.data for c in chunks} == {env.data}


def test_envelope_from_a_ready_message_leaves_it_unchanged() -> None:
    msg = EmailMessage()
    msg["To"] = "a@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Subject"] = "Ready-made"
    msg.set_content("body")
    env = envelope_from_message(msg, mail_from=ME)
    assert env.recipients == ("a@example.com", "hidden@example.com")
    out = parsed(env)
    assert out["Bcc"] is None and out["From"] == ME and out["Message-ID"] == env.message_id
    assert out["Date"] is not None
    # the caller's object is untouched
    assert msg["Bcc"] == "hidden@example.com"
    assert msg["Message-ID"] is None and msg["From"] is None


def test_envelope_from_a_compat32_message() -> None:
    from email.mime.text import MIMEText

    msg = MIMEText("plain old API")
    msg["To"] = "a@example.com"
    msg["Subject"] = "compat32"
    env = envelope_from_message(msg, mail_from=ME)
    assert content(parsed(env)) == "plain old API"


def test_envelope_from_message_rejects_injection_and_no_recipient() -> None:
    from email.message import Message

    msg = Message()
    msg["Subject"] = "no one"
    with pytest.raises(InvalidMessageError, match="no To, Cc or Bcc recipient"):
        envelope_from_message(msg, mail_from=ME)
    msg["To"] = "a@example.com"
    msg["X-Evil"] = "x\r\nBcc: evil@example.com"
    with pytest.raises(InvalidMessageError, match="X-Evil contains a line break"):
        envelope_from_message(msg, mail_from=ME)
    with pytest.raises(InvalidMessageError, match=r"takes an email\.message\.Message"):
        envelope_from_message("not a message", mail_from=ME)  # type: ignore[arg-type]


def test_address_headers_are_rendered_and_non_utf8_file_names_survive(tmp_path: Path) -> None:
    odd = tmp_path / "caf\udce9.txt"  # a Latin-1 file name on a UTF-8 system
    try:
        odd.write_bytes(b"x")
    except (UnicodeEncodeError, OSError):  # pragma: no cover - file system refuses it
        pytest.skip("this file system does not take such names")
    msg = parsed(build(headers={"Sender": "Ops <ops@example.com>"}, attachments=[odd]))
    assert msg["Sender"] == "Ops <ops@example.com>"
    assert next(msg.iter_attachments()).get_filename() == "caf\ufffd.txt"


# -- inputs a new user gets wrong (issue 17) ----------------------------------------------


def test_one_string_or_path_is_one_attachment(tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 report")
    for given in (str(report), report):
        files = list(parsed(build(text="see attached", attachments=given)).iter_attachments())
        assert [(f.get_filename(), f.get_content_type()) for f in files] == [
            ("report.pdf", "application/pdf")
        ]
        assert files[0].get_content() == b"%PDF-1.4 report"


def test_one_tuple_is_one_attachment() -> None:
    files = list(parsed(build(attachments=("figures.csv", b"a,b\n"))).iter_attachments())
    assert [(f.get_filename(), content(f)) for f in files] == [("figures.csv", "a,b\n")]
    three = build(attachments=("notes", b"# hi", "text/markdown"))
    assert [f.get_content_type() for f in parsed(three).iter_attachments()] == ["text/markdown"]


@pytest.mark.parametrize(
    ("attachments", "message"),
    [
        (
            "missing.pdf",
            r"^attachments: cannot read 'missing\.pdf' \(No such file or directory\)\.$",
        ),
        (
            b"%PDF",
            r"^attachments: bytes need a file name: give \('name\.pdf', data\) instead\.$",
        ),
        (
            42,
            r"^attachments: expected a path, a \(filename, bytes\[, mimetype\]\) tuple or a "
            r"list of them, got int\.$",
        ),
    ],
)
def test_attachment_mistakes_name_the_whole_value(attachments: Any, message: str) -> None:
    with pytest.raises(InvalidMessageError, match=message):
        build(attachments=attachments)


def test_one_string_attachment_reaches_gmail(tmp_path: Path, fake_gmail: FakeGmail) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 monthly")
    with fake_gmail.mailer(spool=None) as mailer:
        mailer.send("you@example.com", "Report", "attached", attachments=str(report))
    [record] = fake_gmail.messages
    files = list(record.message.iter_attachments())
    assert [(f.get_filename(), f.get_content()) for f in files] == [
        ("report.pdf", b"%PDF-1.4 monthly")
    ]


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
def test_a_single_address_string_works_for_every_field(field: str) -> None:
    env = build(**{"to": None, field: "Ada <ada@example.com>"})
    assert env.recipients == ("ada@example.com",)


@pytest.mark.parametrize(
    "given",
    ["a@example.com;b@example.com", "a@example.com; b@example.com", "Ada <a@example.com>;"],
)
def test_semicolons_between_addresses_say_use_commas(given: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        build(to=given)
    assert str(info.value) == (
        f"to: {given!r} holds a ';' between addresses: separate addresses with commas."
    )


def test_semicolons_in_quotes_and_groups_are_not_separators() -> None:
    env = build(to='"Doe; Jane" <jane@example.com>, b@example.com')
    assert env.recipients == ("jane@example.com", "b@example.com")
    with pytest.raises(InvalidMessageError, match=r"is a group \(friends:\.\.\.;\)"):
        build(to="friends: a@example.com;")


def test_semicolons_in_alert_recipients_are_a_configuration_error() -> None:
    from postbud import ConfigurationError
    from postbud.alerts import AlertHandler

    with pytest.raises(ConfigurationError) as info:
        AlertHandler(
            to="a@example.com;b@example.com",
            username=ME,
            app_password="abcd efgh ijkl mnop",
            spool=None,
        )
    assert str(info.value) == (
        "to: 'a@example.com;b@example.com' holds a ';' between addresses: "
        "separate addresses with commas."
    )


HTML = """<html><head><title>Build</title><style>p { color: red }</style></head><body>
<h1>Build   1432 failed</h1>
<p>Step <b>test</b> failed.<br>See <a href="https://ci.example.com/1432">the log</a>.</p>
<script>document.write("nope")</script>
<ul><li>first</li><li>second</li></ul>
<p>Questions: <a href="mailto:ops@example.com">ops@example.com</a> &amp; co.</p>
</body></html>"""

HTML_AS_TEXT = """Build 1432 failed

Step test failed.
See the log (https://ci.example.com/1432).

- first
- second

Questions: ops@example.com & co.
"""


def test_html_only_gets_a_readable_text_alternative_first() -> None:
    msg = parsed(build(html=HTML))
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert content(text) == HTML_AS_TEXT
    assert "nope" not in content(text) and "color" not in content(text)
    assert content(html) == HTML + "\n"


def test_html_with_inline_images_keeps_them_with_the_html() -> None:
    msg = parsed(build(html='<p><img src="cid:logo" alt="Logo"> green</p>', inline={"logo": PNG}))
    text, related = msg.iter_parts()
    assert content(text) == "Logo green\n"
    assert related.get_content_type() == "multipart/related"


def test_an_html_only_mail_reaches_gmail_as_alternative(fake_gmail: FakeGmail) -> None:
    with fake_gmail.mailer(spool=None) as mailer:
        mailer.send("you@example.com", "Build", html=HTML)
    [record] = fake_gmail.messages
    assert record.message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in record.message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert record.text == HTML_AS_TEXT and record.html == HTML + "\n"


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<ol start=3><li>c</li><li>d<ul><li>e</li></ul></li></ol>", "3. c\n4. d\n  - e"),
        ("<p>a<br/><br/>b</p><p>c</p>", "a\n\nb\n\nc"),
        (
            "<table><tr><th>Host</th><td>web-1</td></tr><tr><th>Load</th><td>9</td></tr></table>",
            "Host  web-1\nLoad  9",
        ),
        ('<a href="https://x.example/">https://x.example/</a>', "https://x.example/"),
        ('<a href="https://x.example/"></a>', "https://x.example/"),
        ('<a href="#top">top</a> <a href="javascript:void(0)">js</a>', "top js"),
        ("<pre>  two\n    spaces</pre>", "  two\n    spaces"),
        ("Fish &amp; chips &lt;3 &eacute;", "Fish & chips <3 é"),
        ("<style>x</style><script>y</script>", ""),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text
