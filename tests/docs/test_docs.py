"""Every Python example in README.md and docs/*.md runs (or is a tested file).

Rules for a fenced ``python`` block, by the HTML comment on the line before it:

- none: the block is executed, the file's blocks in order in one namespace, in a
  temporary folder holding ``report.pdf`` and ``logo.png``, with a FakeGmail that
  knows the docs' account (``me@gmail.com`` / ``abcd efgh ijkl mnop``) intercepting
  every connection, so examples written for smtp.gmail.com run unchanged; the folder
  also holds ``token.json``, an authorized-user file whose access token is still valid
  and accepted by that FakeGmail (so OAuth2 examples need no token endpoint);
- ``<!-- file: docs/examples/x.py -->``: the block must be that file, word for word
  (pytest runs the file itself);
- ``<!-- skip: why -->``: not run; the reason is required.

Documented output cannot drift from the code: a ``text`` block introduced by a line
that is just "prints" (or "prints:") must be exactly what the python block before it
printed (``...`` in it stands for any text), and every row of a table headed
``| mistake | message |`` is produced by ``MISTAKES`` below and compared with the real
error text.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from postbud.testing import FakeGmail

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- (?P<mark>\w+): (?P<arg>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
#: A python block's printed output, as the page shows it.
PRINTS = re.compile(r"\s*prints:?\s*\n\s*```text\n(?P<out>.*?)```", re.S)


def blocks(page: Path) -> list[tuple[str | None, str, str, int, str | None]]:
    """(mark, argument, code, line, the output the page says it prints or None)."""
    text = page.read_text()
    found = []
    for m in BLOCK.finditer(text):
        shown = PRINTS.match(text, m.end())
        line = text.count("\n", 0, m.start()) + 1
        found.append((m["mark"], (m["arg"] or "").strip(), m["code"], line, shown and shown["out"]))
    return found


def same_output(shown: str, printed: str) -> bool:
    """``printed`` is what the page shows, ``...`` standing for any text."""
    pattern = ".*?".join(re.escape(part) for part in shown.rstrip().split("..."))
    return re.fullmatch(pattern, printed.rstrip(), re.S) is not None


@pytest.fixture(scope="module")
def docs_gmail() -> Iterator[FakeGmail]:
    with FakeGmail(username="me@gmail.com", app_password="abcd efgh ijkl mnop") as fake:
        yield fake


def test_every_page_is_checked() -> None:
    assert (ROOT / "README.md") in PAGES
    assert len(PAGES) >= 6
    assert sum(len(blocks(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(
    page: Path, docs_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs_gmail.reset()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 fake")
    (tmp_path / "logo.png").write_bytes(PNG)
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "token.json").write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "docs.apps.googleusercontent.com",
                "client_secret": "docs-secret",
                "refresh_token": "1//docs-refresh",
                "token": "ya29.docs-token",
                "expiry": expiry,
            }
        )
    )
    docs_gmail.accept_token("ya29.docs-token", "me@gmail.com")
    monkeypatch.setenv("POSTBUD_USERNAME", "me@gmail.com")
    monkeypatch.setenv("POSTBUD_APP_PASSWORD", "abcd efgh ijkl mnop")
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    # alert_on_crash() examples install hooks: they must not outlive their page.
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    try:
        run_blocks(page, namespace, docs_gmail)
    finally:  # a logging recipe (dictConfig on the root logger) must not outlive its page
        for handler in set(root.handlers) - set(saved[1]):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved[0])
        for handler in saved[1]:
            if handler not in root.handlers:
                root.addHandler(handler)


def run_blocks(page: Path, namespace: dict[str, object], docs_gmail: FakeGmail) -> None:
    with docs_gmail.intercept():
        for mark, arg, code, line, shown in blocks(page):
            if mark == "skip":
                assert arg, f"{page.name}:{line}: a skipped example needs a reason"
                continue
            if mark == "file":
                assert (ROOT / arg).read_text() == code, f"{page.name}:{line} differs from {arg}"
                continue
            assert mark is None, f"{page.name}:{line}: unknown mark {mark!r}"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
            if shown is not None:
                assert same_output(shown, out.getvalue()), (
                    f"{page.name}:{line} prints\n{out.getvalue()}\nnot what the page shows:\n"
                    f"{shown}"
                )


def test_documented_output_is_checked() -> None:
    checked = [(p.name, line) for p in PAGES for *_, line, shown in blocks(p) if shown]
    assert len(checked) >= 3, checked


# -- the documented error texts --------------------------------------------------------

#: Every row of a ``| mistake | message |`` table: its first cell -> the Settings
#: keyword arguments that make that mistake (None: drop the argument).
VALID: dict[str, object] = {"username": "me@gmail.com", "app_password": "abcd efgh ijkl mnop"}
MISTAKES: dict[str, dict[str, object]] = {
    "no `username`": {"username": None},
    "no credentials": {"app_password": None},
    "`app_password` and `auth`": {"auth": "token.json"},
    '`username="me"`': {"username": "me"},
    '`security="ssl", port=587`': {"security": "ssl", "port": 587},
    '`security="tls"`': {"security": "tls"},
    '`port="smtp"`': {"port": "smtp"},
    "`port=70000`": {"port": 70000},
    "`timeout=0`": {"timeout": 0},
    "`alert_max_share=2`": {"alert_max_share": 2},
    '`ca_file="/nonexistent/ca.pem"`': {"ca_file": "/nonexistent/ca.pem"},
    '`host="smtp.gmail.com\\r\\nX: y"`': {"host": "smtp.gmail.com\r\nX: y"},
}
TABLE_ROW = re.compile(r"^\| (?P<mistake>.+?) \| `(?P<message>.+)` \|$", re.M)


def mistake_rows() -> list[tuple[str, str, str]]:
    rows = []
    for page in PAGES:
        text = page.read_text()
        for table in re.finditer(
            r"^\| mistake \| message \|\n\|---\|---\|\n((?:\|.*\n)+)", text, re.M
        ):
            for row in TABLE_ROW.finditer(table[1]):
                rows.append((page.name, row["mistake"], row["message"]))
    return rows


def test_every_documented_mistake_is_produced() -> None:
    rows = mistake_rows()
    assert len(rows) >= len(MISTAKES)
    assert {mistake for _, mistake, _ in rows} == set(MISTAKES)


@pytest.mark.parametrize(("page", "mistake", "message"), mistake_rows())
def test_documented_error_texts_are_the_real_ones(page: str, mistake: str, message: str) -> None:
    import postbud

    kwargs = {**VALID, **MISTAKES[mistake]}
    with pytest.raises(postbud.ConfigurationError) as info:
        postbud.Settings(**{k: v for k, v in kwargs.items() if v is not None})  # type: ignore[arg-type]
    real = str(info.value)
    if message.endswith("…"):
        assert real.startswith(message[:-1].rstrip()), f"{page}: {mistake}: {real}"
    else:
        assert real == message, f"{page}: {mistake}: {real}"
