"""Header injection and mangled headers (issue 15, part 1), as plain regression tests
beside the property-based ones (test_fuzz_message.py). Most tests here fail on the code
before the fix on at least one Python (3.10–3.12 for the folder's decoding and the comma,
all four for the rest); the others pin what must not change with it: a quoted display
name with a comma, an encoded word in an address string read as the stdlib reads it,
compat32 text going out as written, encoded CR LF in a modern message refused, and
blanks (the Decision: values compare after strip()).

The bytes are parsed back with ``email.policy.default`` and must hold exactly the
headers postbud was given plus the ones it adds."""

from __future__ import annotations

import email
import logging
from email import policy
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from typing import Any

import pytest

from postbud import AlertHandler, InvalidMessageError, Mailer
from postbud._message import Envelope, build_message
from postbud._ready import envelope_from_message
from postbud.testing import MemoryTransport

ME = "me@gmail.com"
PW = "abcd efgh ijkl mnop"
# The subject of the issue: no raw CR/LF, but encoded words that decode to CR LF.
INJECTION = (
    "Your order =?utf-8?q?=0D=0A?=Reply-To: phish@attacker.example=?utf-8?q?=0D=0A?="
    "Content-Type: text/html=?utf-8?q?=0D=0A=0D=0A?=<h1>Log in again</h1>"
)
ADDED = ["From", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]


def build(**kwargs: Any) -> Envelope:
    kwargs.setdefault("mail_from", ME)
    kwargs.setdefault("to", "you@example.com")
    kwargs.setdefault("subject", "Hello")
    kwargs.setdefault("text", "hi")
    return build_message(**kwargs)


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert [d for part in msg.walk() for d in part.defects] == []
    for name, value in msg.items():
        assert value.defects == (), (name, value.defects)
    return msg


def parsed_text(data: bytes) -> EmailMessage:
    """An SMTPUTF8 message (UTF-8 headers), read as text as a reader does."""
    msg = email.message_from_string(data.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    for name, value in msg.items():
        assert value.defects == (), (name, value.defects)
    return msg


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


# -- encoded words in the text: never decoded into line breaks ------------------------


@pytest.mark.parametrize(
    "subject",
    [
        INJECTION,  # long ASCII: the folding path
        "Grüße " + INJECTION,  # non-ASCII: the folding path
        "=?utf-8?q?=0D=0A?=Bcc: x@attacker.example",  # short: the fast path
    ],
)
def test_encoded_words_in_a_subject_stay_text(subject: str) -> None:
    env = build(subject=subject)
    msg = parsed(env.data)
    assert msg.keys() == ["From", "To", "Subject", *ADDED[1:]]
    assert msg["Subject"] == subject
    assert msg["Reply-To"] is None and msg.get_content_type() == "text/plain"
    assert msg.get_content() == "hi\r\n"


def test_encoded_words_in_a_custom_header_stay_text() -> None:
    msg = parsed(build(headers={"X-Order": INJECTION, "X-Short": "=?utf-8?q?P?="}).data)
    assert (msg["X-Order"], msg["X-Short"]) == (INJECTION, "=?utf-8?q?P?=")
    assert msg["Reply-To"] is None and msg.get_content_type() == "text/plain"


def test_text_that_looks_like_an_encoded_word_arrives_as_written() -> None:
    env = build(subject="=?utf-8?q?P?=", attachments=[("=?utf-8?q?P?=.txt", b"x")])
    msg = parsed(env.data)
    assert msg["Subject"] == "=?utf-8?q?P?="
    assert next(msg.iter_attachments()).get_filename() == "=?utf-8?q?P?=.txt"


def test_an_alert_about_a_hostile_user_name_is_one_subject() -> None:
    transport = MemoryTransport()
    mailer = Mailer(username=ME, app_password=PW, transport=transport)
    handler = AlertHandler("ops@example.com", mailer=mailer)
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "login failed: %s", None, None)
    record.args = (INJECTION,)
    handler.handle(record)
    handler.close()
    mailer.close()
    [received] = transport.messages
    msg = parsed(received.data)
    assert msg["Reply-To"] is None
    assert INJECTION in str(msg["Subject"])
    assert msg.get_content_type() == "multipart/alternative"


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        "a" * 25 + "ü <j@example.com>",
        "a" * 40 + "ü <j@example.com>",
        '"Müller, Anna-Katharina von und zu Hohenberg" <anna@example.com>',
    ],
)
def test_a_long_non_ascii_display_name_keeps_the_other_recipients(first: str) -> None:
    env = build(to=[first, "b@example.com", "c@example.com"], cc=[first, "d@example.com"])
    msg = parsed(env.data)
    assert [a.addr_spec for a in msg["To"].addresses][1:] == ["b@example.com", "c@example.com"]
    assert len(msg["To"].addresses) == 3 and len(msg["Cc"].addresses) == 2
    assert b"=?utf-8?q?=2C?=" not in head_of(env.data)


def test_display_names_that_look_like_encoded_words_are_encoded() -> None:
    # The stdlib reads an encoded word in an address as the words it encodes; postbud
    # writes the display name it read so that a reader gets the same name back.
    env = build(to="=?utf-8?q?Ann_=3D=3F_x?= <ann@example.com>")
    [ann] = parsed(env.data)["To"].addresses
    assert (ann.display_name, ann.addr_spec) == ("Ann =? x", "ann@example.com")


# -- control characters -----------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x01", "\x0b", "\x0c", "\x1b", "\x1c", "\x1f", "\x7f"])
def test_control_characters_in_a_subject_or_header_value_are_encoded(char: str) -> None:
    subject = f"disk{char}full"
    env = build(subject=subject, headers={"X-Note": f"a {char} b"})
    assert char.encode() not in head_of(env.data)
    msg = parsed(env.data)
    assert (msg["Subject"], msg["X-Note"]) == (subject, f"a {char} b")
    assert msg.keys() == ["From", "To", "Subject", "Date", "Message-ID", "X-Note", *ADDED[3:]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attachments": [("a\x01.txt", b"x")]}, "attachments: the file name 'a\\x01.txt'"),
        ({"attachments": [("a\x7f.txt", b"x")]}, "holds the control character '\\x7f'"),
        ({"html": "x", "inline": {"lo\x1cgo": b"x"}}, "inline: 'lo\\x1cgo' is not a usable"),
        ({"html": "x", "inline": {"=?utf-8?q?x?=": b"x"}}, "is not a usable Content-ID"),
        ({"to": "Ann\x0b <ann@example.com>"}, "to: 'Ann\\x0b <ann@example.com>' holds the"),
        ({"sender": "Me\x1b <me@gmail.com>"}, "sender: 'Me\\x1b <me@gmail.com>' holds the"),
        ({"headers": {"Date": "Mon, 1 Jan 2024 0:00 +0000\x01"}}, "headers: Date"),
        ({"headers": {"Message-ID": "<a\x01b@c>"}}, "headers: Message-ID"),
        ({"headers": {"Resent-Bcc": "x@example.com"}}, "headers: 'Resent-Bcc' would show"),
    ],
)
def test_control_characters_where_they_cannot_be_encoded_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidMessageError) as info:
        build(**kwargs)
    assert message in str(info.value)


# -- send_message(): compat32 and modern messages ------------------------------------------


@pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\x85", "\u2028"])
@pytest.mark.parametrize("factory", [Message, lambda: MIMEText("body")])
def test_compat32_headers_cannot_split_the_header_block(char: str, factory: Any) -> None:
    msg = factory()
    msg["To"] = "a@example.com"
    msg["Subject"] = f"hello{char}X-Injected: yes"
    if char.isascii():  # compat32 writes ASCII as it is: refused
        with pytest.raises(InvalidMessageError, match="header Subject holds the control character"):
            envelope_from_message(msg, mail_from=ME)
        return
    out = parsed(envelope_from_message(msg, mail_from=ME).data)  # other text: encoded
    assert out["Subject"] == f"hello{char}X-Injected: yes" and "X-Injected" not in out


def test_compat32_errors_of_the_email_package_are_translated() -> None:
    msg = Message()
    msg["To"] = "a@example.com"
    msg.set_payload("héllo")  # a str payload that is not ASCII, and no charset
    with pytest.raises(InvalidMessageError, match="needs a charset") as info:
        envelope_from_message(msg, mail_from=ME)
    assert isinstance(info.value.__cause__, UnicodeError)
    empty_from = Message()
    empty_from["To"] = "a@example.com"
    empty_from["From"] = ""
    env = envelope_from_message(empty_from, mail_from=ME)
    assert env.mail_from == ME
    bad_name = Message()
    bad_name["To"] = "a@example.com"
    bad_name["X Bad"] = "x"
    with pytest.raises(InvalidMessageError, match="'X Bad' is not a valid header name"):
        envelope_from_message(bad_name, mail_from=ME)


def test_compat32_messages_still_go_out_as_written() -> None:
    msg = MIMEText("Grüße", "plain", "utf-8")
    msg["To"] = '"Doe, Jane" <jane@example.com>, b@example.com'
    msg["Subject"] = "Grüße =?utf-8?q?P?= " + "long " * 30
    msg["X-Pre-Encoded"] = "=?utf-8?q?Gr=C3=BC=C3=9Fe?="  # Django encodes this way
    out = parsed(envelope_from_message(msg, mail_from=ME).data)
    assert out["Subject"].strip() == ("Grüße =?utf-8?q?P?= " + "long " * 30).strip()
    assert out["X-Pre-Encoded"] == "Grüße"
    assert [a.display_name for a in out["To"].addresses] == ["Doe, Jane", ""]
    assert out.get_content() == "Grüße"


@pytest.mark.parametrize("subject", ["=?utf-8?q?=3D=3Futf-8=3Fq=3FP=3F=3D?=", "Grüße " * 20])
def test_modern_messages_are_written_by_postbud_rules(subject: str) -> None:
    msg = EmailMessage(policy=policy.SMTP)
    msg["To"] = ["a" * 40 + "ü <j@example.com>", "b@example.com", "c@example.com"]
    msg["Subject"] = subject  # the first decodes to the text "=?utf-8?q?P?="
    msg.set_content("body")
    expected = str(msg["Subject"]).strip()
    out = parsed(envelope_from_message(msg, mail_from=ME).data)
    assert out["Subject"].strip() == expected
    assert len(out["To"].addresses) == 3


@pytest.mark.parametrize(
    ("to", "groups"),
    [
        (
            "Team Zoë: a@example.com, b@example.com;",
            [("Team Zoë", ["a@example.com", "b@example.com"])],
        ),
        ("Ünd:;, c@example.com", [("Ünd", []), (None, ["c@example.com"])]),
        (
            "Zoë Ops: Jürgen <a@example.com>, Zoë <b@example.com>;, "
            + ", ".join(f"Grüße{i} <g{i}@example.com>" for i in range(6)),
            [("Zoë Ops", ["a@example.com", "b@example.com"])]
            + [(None, [f"g{i}@example.com"]) for i in range(6)],
        ),
        (
            '"Ops, EU": a@example.com;, undisclosed-recipients:;',
            [("Ops, EU", ["a@example.com"]), ("undisclosed-recipients", [])],
        ),
    ],
)
@pytest.mark.parametrize("chosen", [policy.SMTP, policy.SMTPUTF8])
def test_groups_with_non_ascii_names_keep_every_member(
    to: str, groups: list[tuple[str | None, list[str]]], chosen: Any
) -> None:
    # The stdlib's folder writes an encoded group name against its colon (a parse
    # defect) and, on 3.10-3.12, can encode the commas between members.
    msg = EmailMessage(policy=chosen)
    msg["To"] = to
    msg["Subject"] = "s"
    msg.set_content("body")
    env = envelope_from_message(msg, mail_from=ME)
    out = parsed(env.data) if not env.smtputf8 else parsed_text(env.data)
    assert [
        (g.display_name, [a.addr_spec for a in g.addresses]) for g in out["To"].groups
    ] == groups
    assert sorted(env.recipients) == sorted({a for _, members in groups for a in members})


@pytest.mark.parametrize(
    "to",
    [
        "alice@example.com, bob@example.com, Marketing and Communications Team EMEA: "
        "carol@example.com;",
        "G" * 74 + ": a@example.com;",
        "G" * 76 + ":;, b@example.com",
    ],
)
def test_a_group_name_at_the_end_of_a_line_keeps_its_colon_on_it(to: str) -> None:
    msg = EmailMessage(policy=policy.SMTP)
    msg["To"] = to
    msg["Subject"] = "s"
    msg.set_content("x")
    want = [(g.display_name, [a.addr_spec for a in g.addresses]) for g in msg["To"].groups]
    out = parsed(envelope_from_message(msg, mail_from=ME).data)
    assert [(g.display_name, [a.addr_spec for a in g.addresses]) for g in out["To"].groups] == want


def test_a_parsed_message_is_written_by_postbuds_rules_too() -> None:
    # message_from_bytes keeps each header's source text; the stdlib's refolding of a
    # long one wrote decoded look-alikes raw, which a reader decoded a second time.
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\n"
        b"X-Note: =?utf-8?q?=3D=3Futf-8=3Fq=3FHELLO=3F=3D?=" + b" word" * 14 + b"\r\n\r\nbody\r\n"
    )
    msg = email.message_from_bytes(raw, policy=policy.default)
    out = parsed(envelope_from_message(msg, mail_from=ME).data)
    assert out["X-Note"] == "=?utf-8?q?HELLO?=" + " word" * 14
    hostile = raw.replace(b"HELLO", b"=3D0D=3D0ABcc:evil=40x.com")
    out = parsed(
        envelope_from_message(
            email.message_from_bytes(hostile, policy=policy.default), mail_from=ME
        ).data
    )
    assert "Bcc" not in out and out["X-Note"].startswith("=?utf-8?q?=0D=0ABcc:evil@x.com?=")
    encoded_break = raw.replace(b"=3D=3Futf-8=3Fq=3FHELLO=3F=3D", b"=0D=0ABcc:evil@x.com")
    with pytest.raises(InvalidMessageError, match="header X-Note contains a line break"):
        envelope_from_message(
            email.message_from_bytes(encoded_break, policy=policy.default), mail_from=ME
        )


@pytest.mark.parametrize("chosen", [policy.default, policy.compat32])
def test_8bit_headers_of_a_parsed_message_are_encoded_without_smtputf8(chosen: Any) -> None:
    raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: caf\xc3\xa9\r\n\r\nbody\r\n"
    env = envelope_from_message(email.message_from_bytes(raw, policy=chosen), mail_from=ME)
    assert not env.smtputf8 and head_of(env.data).isascii()
    assert parsed(env.data)["Subject"] == "café"
    latin1 = raw.replace(b"caf\xc3\xa9", b"caf\xe9")  # not UTF-8: nothing to read it as
    with pytest.raises(
        InvalidMessageError, match="header Subject holds 8-bit bytes that are not UTF-8"
    ):
        envelope_from_message(email.message_from_bytes(latin1, policy=chosen), mail_from=ME)


def test_resent_bcc_is_refused_by_send_message_as_by_send() -> None:
    msg = EmailMessage()
    msg["To"] = "a@example.com"
    msg["Resent-Bcc"] = "hidden@example.com"
    msg.set_content("x")
    with pytest.raises(InvalidMessageError, match="header Resent-Bcc would show hidden recipients"):
        envelope_from_message(msg, mail_from=ME)


def test_compat32_groups_are_sent_with_their_members() -> None:
    msg = MIMEText("hi", "plain", "utf-8")
    msg["To"] = "undisclosed-recipients:;"
    msg["Cc"] = "Zoë Team: a@example.com, Jürgen <b@example.com>;"
    msg["Bcc"] = "x@example.com"
    msg["Subject"] = "s"
    env = envelope_from_message(msg, mail_from=ME)
    assert env.recipients == ("a@example.com", "b@example.com", "x@example.com")
    out = parsed(env.data)
    assert [g.display_name for g in out["To"].groups] == ["undisclosed-recipients"]
    [team] = out["Cc"].groups
    assert (team.display_name, [a.display_name for a in team.addresses]) == (
        "Zoë Team",
        ["", "Jürgen"],
    )


def test_a_very_long_subject_is_encoded_whole_and_in_linear_time() -> None:
    # 100,000 characters: the encoder summed what was left for every word (7 s here).
    subject = "日本語のテキスト" * 12_500
    assert parsed(build(subject=subject).data)["Subject"] == subject


def test_modern_message_with_encoded_line_breaks_is_refused() -> None:
    msg = EmailMessage(policy=policy.SMTP)
    msg["To"] = "a@example.com"
    msg["Subject"] = INJECTION  # decoded when set: the value holds CR LF
    msg.set_content("body")
    with pytest.raises(InvalidMessageError, match="header Subject contains a line break"):
        envelope_from_message(msg, mail_from=ME)


# -- blanks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "read"), [(" ", ""), ("  Hi", "Hi"), ("Hi  there\t", "Hi  there"), ("\t", "")]
)
def test_surrounding_blanks_may_go_and_inner_blanks_stay(subject: str, read: str) -> None:
    # Decision of issue 15: values compare after strip(); inner blanks are kept exactly.
    assert parsed(build(subject=subject).data)["Subject"].strip() == read
    assert parsed(build(subject=subject + "ü").data)["Subject"] == (subject + "ü").strip()


def test_the_header_block_is_scanned_before_anything_is_sent() -> None:
    with pytest.raises(InvalidMessageError, match="would not be written as one header field"):
        build(headers={"X-" + "n" * 1000: "x"})


def test_long_boundaries_and_plain_file_names_go_as_quoted_strings() -> None:
    # Many MIME readers know no RFC 2231 for a boundary (the message would fall apart)
    # or for a file name that is plain ASCII.
    from email.mime.multipart import MIMEMultipart

    boundary = "----=_Part_" + "7" * 60 + "=?x"  # 73 characters, "=?" included: legal
    msg = MIMEMultipart(boundary=boundary)
    msg["To"] = "a@example.com"
    msg.attach(MIMEText("hi"))
    env = envelope_from_message(msg, mail_from=ME)
    assert f' boundary="{boundary}"'.encode() in head_of(env.data)
    assert parsed(env.data).get_boundary() == boundary
    name = "quarterly-report-" + "x" * 70 + ".pdf"
    env = build(attachments=[(name, b"%PDF")])
    assert f'filename="{name}"'.encode() in env.data
    [part] = parsed(env.data).iter_attachments()
    assert part.get_filename() == name


# -- the one-line path of send_message() (_ready._plain_field) --------------------------
# Ordinary headers (printable ASCII, no line break, short) skip the folders: they must be
# written byte for byte as the checked path writes them, and nothing else may take it.

ONE_LINE_COMPAT32 = [
    ("Subject", "Your order 1234 has shipped"),
    ("Subject", "inner  blanks"),  # both blanks kept
    ("X-Mailer", "x" * (78 - len("X-Mailer: "))),  # exactly 78 characters
    ("From", "Shop <shop@example.com>"),
    ("To", '"Doe, Jane" <jane@example.com>, b@example.com'),
    ("Date", "Wed, 02 Dec 2026 04:24:25 -0000"),
    ("Message-ID", "<179618546585.8491.16570762159668746521@localhost>"),
    ("MIME-Version", "1.0"),
    ("Content-Transfer-Encoding", "7bit"),
    ("Content-Type", 'text/plain; charset="utf-8"'),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Type", 'TEXT/Plain;Charset="UTF-8"; format=flowed'),
    ("Content-Type", 'multipart/alternative; boundary="===============5424111912458869827=="'),
    ("Content-Type", 'text/plain; name="a;b=c  d"'),
    ("Content-Disposition", 'attachment; filename="report.pdf"'),
    ("Content-Disposition", 'attachment; filename="' + "r" * 70 + '.pdf"'),  # folded
    ("Content-Disposition", "inline"),
]
# The modern API's address lists are checked and written by postbud's rules instead.
ONE_LINE_MODERN = [(name, value) for name, value in ONE_LINE_COMPAT32 if name not in ("From", "To")]


def _paths(policy_: Any) -> tuple[Any, Any]:
    """The checked policy, and the same without the one-line path."""
    from postbud._ready import _checked

    fast = _checked(policy_)
    slow_cls: Any = type("Slow", (type(fast),), {"_stdlib_fold": False})
    slow = slow_cls.__new__(slow_cls)
    for attr, value in vars(fast).items():
        object.__setattr__(slow, attr, value)
    return fast, slow


@pytest.mark.parametrize(("name", "value"), ONE_LINE_COMPAT32)
def test_the_one_line_path_writes_compat32_headers_as_the_checked_path(
    name: str, value: str
) -> None:
    from postbud._ready import _plain_field

    fast, slow = _paths(policy.compat32)
    data = _plain_field(fast, name, value)
    assert data is not None  # the path is taken
    assert data == slow.fold_binary(name, value) == fast.fold_binary(name, value)


@pytest.mark.parametrize(("name", "value"), ONE_LINE_MODERN)
@pytest.mark.parametrize("modern", [policy.default, policy.SMTP], ids=["default", "SMTP"])
def test_the_one_line_path_writes_modern_headers_as_the_checked_path(
    name: str, value: str, modern: Any
) -> None:
    from postbud._ready import _plain_field

    fast, slow = _paths(modern)
    header_ = modern.header_factory(name, value)
    data = _plain_field(fast, name, header_)
    assert data is not None
    assert data == slow.fold_binary(name, header_) == fast.fold_binary(name, header_)


UNUSUAL = [
    ("Subject", "Grüße"),  # not ASCII
    ("Subject", "line\r\n break"),  # folding
    ("Subject", "bare\nLF"),
    ("Subject", "tab\there"),
    ("Subject", "control\x1cchar"),
    ("Subject", "del\x7f"),
    ("Subject", "=?utf-8?q?=0D=0A?=Bcc: x@example.com"),  # an encoded word
    ("Subject", " leading blank"),
    ("Subject", "trailing blank "),
    ("Subject", ""),
    ("Subject", "x" * (79 - len("Subject: "))),  # 79 characters: folded by the checked path
    ("Content-Type", "text/plain; name*=utf-8''%C3%A9.txt"),  # RFC 2231
    ("Content-Type", 'text/plain; charset="a"; charset="b"'),  # a repeated parameter
    ("Content-Type", 'text/plain; name="a\\"b"'),  # a backslash in a quoted string
    ("Content-Type", 'text/plain; name="=?utf-8?q?a?="'),
    ("Content-Type", 'text/plain; name=" padded "'),
    ("Content-Type", "text/plain ; charset=utf-8"),
    ("Content-Type", "text"),
    ("Content-Disposition", 'attachment; filename="r\u00e9.pdf"'),
]


@pytest.mark.parametrize(("name", "value"), UNUSUAL)
@pytest.mark.parametrize("policy_", [policy.compat32, policy.default], ids=["compat32", "modern"])
def test_anything_unusual_takes_the_checked_path(name: str, value: str, policy_: Any) -> None:
    from postbud._ready import _plain_field

    fast, _ = _paths(policy_)
    if isinstance(policy_, policy.EmailPolicy):
        assert _plain_field(fast, name, policy_.header_factory(name, value)) is None
        assert _plain_field(fast, name, value) is None  # source text of a parsed message
    else:
        assert _plain_field(fast, name, value) is None


def test_modern_address_lists_and_headers_with_defects_take_the_checked_path() -> None:
    from postbud._ready import _plain_field

    fast, _ = _paths(policy.default)
    for name, value in [
        ("To", "a@example.com"),  # addresses are checked and written by postbud's rules
        ("Date", "not a date"),  # a defect
        ("MIME-Version", "1.0 (comment) x"),  # a defect
    ]:
        assert _plain_field(fast, name, policy.default.header_factory(name, value)) is None
    header_ = policy.default.header_factory("Subject", "hi")
    assert _plain_field(fast, "subject", header_) is None  # not the header object's name


def test_a_policy_that_folds_its_own_way_never_takes_the_one_line_path() -> None:
    from postbud._ready import _checked, _CheckedFold

    class Shouting(policy.EmailPolicy):
        def fold_binary(self, name: str, value: str) -> bytes:
            return super().fold_binary(name.upper(), value)

    class Terse(policy.Compat32):
        def _fold(self, name: str, value: Any, sanitize: bool) -> str:
            return f"{name}:{value}{self.linesep}"

    def one_line_path(policy_: Any) -> bool:
        checked_ = _checked(policy_)
        assert isinstance(checked_, _CheckedFold)
        return checked_._stdlib_fold

    assert not one_line_path(Shouting())
    assert not one_line_path(Terse())
    assert one_line_path(policy.default)
    assert one_line_path(policy.SMTPUTF8)
    assert one_line_path(policy.compat32)


def _django_like(kind: str) -> Message:
    """Messages as Django's EmailMessage.message() makes them (5.2: compat32 SafeMIME
    classes; 6.1: email.message.EmailMessage), the boundary fixed."""
    from email.mime.multipart import MIMEMultipart

    msg: Message
    if kind == "compat32":
        msg = MIMEText("Hello there,\nthis is the body.\n", "plain", "us-ascii")
    elif kind == "compat32-multipart":
        msg = MIMEMultipart("alternative", boundary="===============5424111912458869827==")
        msg.attach(MIMEText("text body\n", "plain", "us-ascii"))
        msg.attach(MIMEText("<p>html</p>\n", "html", "us-ascii"))
    else:
        modern = EmailMessage()
        modern.set_content("Hello there,\nthis is the body.\n")
        if kind == "modern-multipart":
            modern.add_alternative("<p>html</p>\n", subtype="html")
            modern.set_boundary("===============5424111912458869827==")
        msg = modern
    msg["Subject"] = "Your order 1234 has shipped"
    msg["From"] = "Shop <shop@example.com>"
    msg["To"] = "a@example.com"
    msg["Cc"] = "b@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Reply-To"] = "help@example.com"
    msg["Date"] = "Wed, 02 Dec 2026 04:24:25 -0000"
    msg["Message-ID"] = "<179618546585.8491.16570762159668746521@localhost>"
    msg["X-Long"] = "word " * 30  # folded: the checked path
    return msg


@pytest.mark.parametrize("kind", ["compat32", "compat32-multipart", "modern", "modern-multipart"])
def test_a_message_is_written_the_same_with_and_without_the_one_line_path(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postbud import _ready

    fast = envelope_from_message(_django_like(kind), mail_from=ME)
    monkeypatch.setattr(_ready, "_plain_field", lambda *args: None)
    slow = envelope_from_message(_django_like(kind), mail_from=ME)
    assert fast.data == slow.data
    assert b"Bcc" not in head_of(fast.data)
    assert fast.recipients == ("a@example.com", "b@example.com", "hidden@example.com")
    msg = parsed(fast.data)
    assert msg["Subject"] == "Your order 1234 has shipped"
    assert msg["X-Long"].strip() == ("word " * 30).strip()  # compared after strip()


def test_a_new_boundary_that_occurs_in_the_parts_is_drawn_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import email.generator
    import random

    from postbud._ready import _Generator

    tokens = iter([1, 1, 2, 3, 3])
    monkeypatch.setattr(random, "randrange", lambda _: next(tokens))  # the generator's
    first = _Generator._make_boundary()
    text = b"body\r\n--" + first.encode() + b"\r\nmore"
    again = _Generator._make_boundary(text)
    assert again != first
    assert b"--" + again.encode() + b"\r\n" not in text
    unique = _Generator._make_boundary(b"nothing like it")
    stdlib: Any = email.generator.Generator
    assert unique == stdlib._make_boundary()  # the same token, 3
