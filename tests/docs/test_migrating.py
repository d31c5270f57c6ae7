"""docs/migrating.md works as written: each "after" program runs, and sends what the
"before" one did.

The page shows the files of docs/examples/migrating/ word for word (tests/docs/test_docs.py
checks that). Here the "after" files run as their reader runs them, against a FakeGmail
that knows the docs' account and intercepts every postbud connection, so code written
for smtp.gmail.com runs unchanged. The "before" files need their libraries' servers;
they are compiled, and where the page claims a small change (Flask-Mail: the import
line; Django: the backend line, one handler class) the two files are compared.
yagmail's message is built by yagmail itself, without its network part, and compared
with the one postbud sends.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import re
import runpy
import sys
from collections.abc import Iterator
from email import message_from_string
from email.message import Message
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import postbud
from postbud.testing import FakeGmail

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "migrating.md"
EXAMPLES = ROOT / "docs" / "examples"
MIGRATING = EXAMPLES / "migrating"
ACCOUNT = "me@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
PDF = b"%PDF-1.4 fake"


@pytest.fixture(scope="module")
def _docs_fake() -> Iterator[FakeGmail]:
    with FakeGmail(username=ACCOUNT, app_password=APP_PASSWORD) as fake:
        yield fake


@pytest.fixture
def docs_gmail(
    _docs_fake: FakeGmail, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeGmail]:
    """The docs' Gmail for every postbud connection; the examples' folder and secrets."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.pdf").write_bytes(PDF)
    (tmp_path / "logo.png").write_bytes(PNG)
    monkeypatch.setenv("GMAIL_APP_PASSWORD", APP_PASSWORD)
    monkeypatch.setenv("POSTBUD_SPOOL", str(tmp_path / "outbox.sqlite"))
    _docs_fake.reset()
    with _docs_fake.intercept():
        yield _docs_fake
    _docs_fake.reset()


def load(path: Path) -> ModuleType:
    """``path`` run as a new module, as ``python path`` or an import would run it."""
    spec = importlib.util.spec_from_file_location(f"docs_migrating_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def page_files() -> list[str]:
    return re.findall(r"<!-- file: (docs/examples/\S+) -->", PAGE.read_text())


def test_the_page_shows_every_example() -> None:
    shown = set(page_files())
    for path in MIGRATING.glob("*.py"):
        assert f"docs/examples/migrating/{path.name}" in shown, path.name


@pytest.mark.parametrize("path", sorted(MIGRATING.glob("*_before.py")), ids=lambda p: p.name)
def test_the_before_files_are_python(path: Path) -> None:
    compile(path.read_text(), str(path), "exec")


# -- SMTPHandler -------------------------------------------------------------------------


def test_smtphandler_after_mails_an_error_once_and_counts_the_repeats(
    docs_gmail: FakeGmail,
) -> None:
    module = load(MIGRATING / "smtphandler_after.py")
    handler = module.handler
    log = logging.getLogger("shop")
    assert handler in log.handlers
    try:
        for order in range(3):
            log.error("payment failed", extra={"order": order})
    finally:
        log.removeHandler(handler)
        handler.close()  # what logging.shutdown() does at exit: the repeats are reported

    first, follow_up = docs_gmail.messages
    assert first.recipients == ("oncall@example.com",)
    assert first["From"] == ACCOUNT
    assert first["Subject"] == "Error in the shop: payment failed"
    assert (first["X-Postbud-Alert"], follow_up["X-Postbud-Alert"]) == ("first", "follow-up")
    counts = [str(m["X-Postbud-Count"]) for m in (first, follow_up)]
    assert sum(map(int, counts)) == 3
    assert docs_gmail.connections == 1  # one connection for both, not one per record


def test_smtphandler_before_and_after_name_the_same_people() -> None:
    before, after = ((MIGRATING / f"smtphandler_{w}.py").read_text() for w in ("before", "after"))
    assert '"oncall@example.com"' in before and '"oncall@example.com"' in after
    assert (
        'os.environ["GMAIL_APP_PASSWORD"]' in before and 'os.environ["GMAIL_APP_PASSWORD"]' in after
    )


# -- yagmail -----------------------------------------------------------------------------


def run_printing(path: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(path), run_name="__main__")
    return out.getvalue()


def test_yagmail_after_sends_the_report(docs_gmail: FakeGmail) -> None:
    printed = run_printing(MIGRATING / "yagmail_after.py")

    assert printed == "('ann@example.com', 'bob@example.com')\n"  # what its comment says
    [sent] = docs_gmail.messages
    assert sent.recipients == ("ann@example.com", "bob@example.com")
    assert sent.text is not None and "All jobs finished." in sent.text
    assert sent.html is not None and 'src="cid:logo"' in sent.html
    assert parts(sent.message) == yagmail_parts_after()


def parts(message: Message) -> dict[str, Any]:
    """What a reader sees of a message: who, what, which files and images."""
    files, images = [], []
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        payload = part.get_payload(decode=True)
        if part.get_filename() and part.get_content_disposition() == "attachment":
            files.append((part.get_filename(), payload))
        elif part.get_content_maintype() == "image":
            images.append(payload)
    return {
        "to": sorted(a.strip() for a in str(message["To"]).split(",")),
        "subject": str(message["Subject"]),
        "files": files,
        "images": images,
    }


def yagmail_parts_after() -> dict[str, Any]:
    return {
        "to": ["ann@example.com", "bob@example.com"],
        "subject": "Nightly report",
        "files": [("report.pdf", PDF)],
        "images": [PNG],
    }


def test_yagmail_before_built_the_same_message(
    docs_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """yagmail builds its message as it always does; only its network calls are cut
    (the server it would reach is Gmail's, whose certificate it does not check)."""
    yagmail = pytest.importorskip("yagmail")
    built: list[tuple[list[str], str]] = []
    monkeypatch.setattr(yagmail.SMTP, "login", lambda self: None)

    def attempt_send(self: object, rcpt: list[str], msg: str) -> dict[str, object]:
        built.append((rcpt, msg))
        return {}  # what smtplib's sendmail returns when nobody was refused

    monkeypatch.setattr(yagmail.SMTP, "_attempt_send", attempt_send)
    monkeypatch.setattr(yagmail.SMTP, "close", lambda self: None)
    run_printing(MIGRATING / "yagmail_before.py")

    [(recipients, text)] = built
    assert sorted(recipients) == ["ann@example.com", "bob@example.com"]
    before = parts(message_from_string(text))
    assert before == yagmail_parts_after()  # the same people, subject, file and image
    assert docs_gmail.connections == 0  # it never reached any server


# -- Flask-Mail and Django: the small changes the page claims ----------------------------


def code_lines(path: Path) -> list[str]:
    """The file's lines after its module docstring, blank lines dropped."""
    text = path.read_text()
    body = text.split('"""', 2)[2]
    return [line for line in body.splitlines() if line.strip()]


def test_flask_mail_after_is_the_before_with_another_import() -> None:
    before = code_lines(MIGRATING / "flask_mail_before.py")
    after = code_lines(EXAMPLES / "flask" / "flask_mail_switch.py")
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert changed == [
        (
            "from flask_mail import Mail, Message",
            "from flask_postbud import Mail, Message  # was: from flask_mail import Mail, Message",
        )
    ]
    diff = re.search(r"```diff\n-(?P<old>.*)\n\+(?P<new>.*)\n```", PAGE.read_text())
    assert diff is not None and (diff["old"], diff["new"]) == changed[0]


def test_django_after_is_the_before_with_another_backend() -> None:
    before = code_lines(MIGRATING / "django_before.py")
    after = code_lines(EXAMPLES / "django" / "settings_switch.py")
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert [(b.split(" = ")[0], a.split(" = ")[0]) for b, a in changed] == [
        ("EMAIL_BACKEND", "EMAIL_BACKEND")
    ]


def test_django_logging_after_is_djangos_default_with_one_class_changed() -> None:
    pytest.importorskip("django")
    from django.utils.log import DEFAULT_LOGGING

    logging_after = runpy.run_path(str(EXAMPLES / "django" / "settings_logging.py"))["LOGGING"]
    expected = copy.deepcopy(DEFAULT_LOGGING)
    mail_admins = logging_after["handlers"]["mail_admins"]
    assert (
        DEFAULT_LOGGING["handlers"]["mail_admins"]["class"] == "django.utils.log.AdminEmailHandler"
    )
    assert mail_admins["class"] == "django_postbud.AdminAlertHandler"
    expected["handlers"]["mail_admins"] = mail_admins
    assert logging_after == expected  # nothing else of Django's default changed


def test_the_after_programs_use_only_public_names() -> None:
    for path in [*MIGRATING.glob("*_after.py")]:
        imported = re.findall(r"^(?:from|import) (\S+)", path.read_text(), re.M)
        assert all(not name.startswith("postbud._") for name in imported), path.name
    assert postbud.AlertHandler.__module__ == "postbud"
