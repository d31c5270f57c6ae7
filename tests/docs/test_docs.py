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
"""

from __future__ import annotations

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


def blocks(page: Path) -> list[tuple[str | None, str, str, int]]:
    text = page.read_text()
    return [
        (m["mark"], (m["arg"] or "").strip(), m["code"], text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]


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
        for mark, arg, code, line in blocks(page):
            if mark == "skip":
                assert arg, f"{page.name}:{line}: a skipped example needs a reason"
                continue
            if mark == "file":
                assert (ROOT / arg).read_text() == code, f"{page.name}:{line} differs from {arg}"
                continue
            assert mark is None, f"{page.name}:{line}: unknown mark {mark!r}"
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
