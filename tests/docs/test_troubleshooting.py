"""docs/troubleshooting.md says what postbud really does with each of Gmail's replies.

The page has a table of every reply postbud classifies (``postbud._smtp.replies``) and,
per reply, the hint the error carries. Here:

- the table lists exactly the replies the code knows, each with a section and a hint;
- each reply is answered by FakeGmail to a real ``send()``: the error's class,
  ``retryable``, ``retry_after`` and hint are the page's (the hint word for word, with
  the docs' account ``me@gmail.com``);
- each reply is answered to the outbox's worker: what the page's "the outbox" column
  says happens (a login pause, a backoff, a hold, a dead letter) is what happens;
- the token endpoint's refusals give the hints the page quotes;
- every link to a heading of this page or of another page resolves (GitHub does not
  check them, and the Sphinx build only checks the site).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import postbud
from postbud._smtp import replies as classifier
from postbud.testing import FakeGmail, FakeGoogleTokens, replies

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGE = DOCS / "troubleshooting.md"
#: The account the page's hints name.
DOCS_ACCOUNT = "me@gmail.com"
TO = "you@example.com"

#: Each known reply: the command FakeGmail answers with it, and Gmail's wording of it.
INJECT: dict[tuple[int, str], tuple[str, str]] = {
    (535, "5.7.8"): ("AUTH", replies.BAD_CREDENTIALS),
    (534, "5.7.9"): ("AUTH", replies.APP_PASSWORD_REQUIRED),
    (534, "5.7.14"): ("AUTH", replies.WEB_LOGIN_REQUIRED),
    (454, "4.7.0"): ("AUTH", replies.TOO_MANY_LOGINS),
    (530, "5.7.0"): ("MAIL", replies.AUTH_REQUIRED),
    (504, "5.7.4"): ("AUTH", "504 5.7.4 Unrecognized authentication type. {id} - gsmtp"),
    (421, "4.7.0"): ("MAIL", replies.TRY_AGAIN_LATER),
    (451, "4.4.2"): ("MAIL", replies.IDLE_TIMEOUT),
    (452, "4.5.3"): ("RCPT", replies.TOO_MANY_RECIPIENTS),
    (550, "5.4.5"): ("MAIL", replies.DAILY_LIMIT_EXCEEDED),
    (552, "5.3.4"): ("DATA", replies.MESSAGE_TOO_BIG),
    (553, "5.1.3"): ("RCPT", replies.BAD_RECIPIENT),
    (553, "5.1.7"): ("MAIL", replies.BAD_SENDER),
    (555, "5.5.2"): ("MAIL", replies.SYNTAX_ERROR),
}
#: Gmail closes the connection after these.
CLOSES = {421, 451}

GLANCE = re.compile(
    r"^\| reply \| raised as \| retryable \| `retry_after` \| the outbox \|\n"
    r"\|[-|]+\n((?:\|.*\n)+)",
    re.M,
)
GLANCE_ROW = re.compile(
    r"^\| \[`(?P<code>\d{3}) (?P<enhanced>\d\.\d+\.\d+)`\]\(#(?P<anchor>[\w-]+)\) "
    r"\| `(?P<kind>\w+)` \| (?P<retryable>yes|no) \| (?P<retry_after>\d+|–) "
    r"\| (?P<outbox>[^|]+) \|$",
    re.M,
)
HINT = re.compile(r"^<!-- hint: (?P<key>[^>]+?) -->\n(?P<quote>(?:> .*\n)+)", re.M)
HEADING = re.compile(r"^(?P<hashes>#{1,6}) (?P<title>.+)$", re.M)
LINK = re.compile(r"\]\((?P<page>[\w.-]*\.md)?#(?P<anchor>[\w-]+)\)")


def page_text() -> str:
    return PAGE.read_text()


def glance_rows() -> dict[tuple[int, str], dict[str, str]]:
    table = GLANCE.search(page_text())
    assert table is not None, "the page lost its table of replies"
    rows = {(int(m["code"]), m["enhanced"]): m.groupdict() for m in GLANCE_ROW.finditer(table[1])}
    assert len(rows) == table[1].count("\n"), "a row of the table does not parse"
    return rows


def hints() -> dict[str, str]:
    """``<!-- hint: KEY -->`` -> the quoted hint as one line."""
    return {
        m["key"]: " ".join(line[2:].strip() for line in m["quote"].splitlines())
        for m in HINT.finditer(page_text())
    }


def slug(title: str) -> str:
    """A heading's anchor as GitHub and MyST (``myst_heading_anchors``) make it."""
    text = re.sub(r"[`*]", "", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # no code
    return {slug(m["title"]) for m in HEADING.finditer(text)}


def on_page(hint: str | None, fake: FakeGmail) -> str:
    """A hint as the page shows it: for the docs' account, not the fake's."""
    assert hint is not None
    return hint.replace(fake.username, DOCS_ACCOUNT)


# -- the page lists what the code knows --------------------------------------------------


def test_the_table_lists_every_reply_postbud_knows() -> None:
    known = set(classifier._KNOWN)
    assert set(glance_rows()) == known
    assert set(INJECT) == known  # and this test answers each of them


def test_every_reply_has_a_section_and_a_hint() -> None:
    text = page_text()
    found = hints()
    for (code, enhanced), row in glance_rows().items():
        assert re.search(rf"^### {code} {re.escape(enhanced)}: ", text, re.M), (code, enhanced)
        assert row["anchor"] in anchors(PAGE), row["anchor"]
        assert f"{code} {enhanced}" in found, f"no hint quoted for {code} {enhanced}"


# -- what send() raises ------------------------------------------------------------------


def fail(fake: FakeGmail, key: tuple[int, str], times: int) -> None:
    command, reply = INJECT[key]
    fake.fail_next(command, reply, times=times, close=key[0] in CLOSES)


@pytest.mark.parametrize("key", sorted(INJECT), ids=lambda k: f"{k[0]}-{k[1]}")
def test_send_raises_what_the_page_says(fake_gmail: FakeGmail, key: tuple[int, str]) -> None:
    row = glance_rows()[key]
    fail(fake_gmail, key, times=2)  # twice: a connection found dead is replaced once
    with (
        fake_gmail.mailer(spool=None) as mailer,
        pytest.raises(postbud.DeliveryError) as info,
    ):
        mailer.send(TO, "Hello", "x")

    exc = info.value
    assert type(exc).__name__ == row["kind"]
    assert exc.code == key[0]
    assert exc.retryable is (row["retryable"] == "yes")
    assert exc.retry_after == (None if row["retry_after"] == "–" else float(row["retry_after"]))
    assert on_page(exc.hint, fake_gmail) == hints()[f"{key[0]} {key[1]}"]


def test_the_oauth2_hint_of_535(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    fake_gmail.fail_next("AUTH", replies.BAD_CREDENTIALS, times=2)  # refreshed once, refused again
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,
        spool=None,
    )
    with postbud.Mailer(settings) as mailer, pytest.raises(postbud.AuthenticationError) as info:
        mailer.send(TO, "Hello", "x")
    assert info.value.code == 535
    assert on_page(info.value.hint, fake_gmail) == hints()["535 5.7.8 oauth"]


def test_454_means_throttling_only_at_the_login() -> None:
    error = classifier.classify(454, "4.7.0 TLS not available", stage="starttls")
    assert isinstance(error, postbud.errors.TransportError) and error.retryable
    assert "TransportError" in page_text().split("### 454 4.7.0", 1)[1].split("###", 1)[0]


# -- what the outbox does ----------------------------------------------------------------


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def logins(fake: FakeGmail) -> int:
    return sum(1 for c in fake.commands if c.startswith("AUTH"))


@pytest.fixture
def outbox(fake_gmail: FakeGmail, tmp_path: Path) -> Iterator[postbud.Mailer]:
    """A Mailer whose outbox has a spool of its own (gates and holds start empty)."""
    mailer = fake_gmail.mailer(spool=str(tmp_path / "outbox.sqlite"), exit_timeout=0.5)
    yield mailer
    mailer.close()


#: Long enough for a 1 s backoff step to have run, were there one.
QUIET = 1.3


@pytest.mark.parametrize("key", sorted(INJECT), ids=lambda k: f"{k[0]}-{k[1]}")
def test_the_outbox_does_what_the_page_says(
    fake_gmail: FakeGmail, outbox: postbud.Mailer, key: tuple[int, str]
) -> None:
    says = glance_rows()[key]["outbox"]
    fail(fake_gmail, key, times=1)
    outbox.submit(TO, "Hello", "x")
    outbox.flush(10)

    if says.startswith(("pauses the account's logins", "no new login")):
        time.sleep(QUIET)
        assert logins(fake_gmail) == 1  # no second login: not retried after a backoff
        stats = outbox.stats()
        assert (stats["queued"], stats["dead"], len(fake_gmail.messages)) == (1, 0, 0)
    elif says.startswith("holds the whole account"):
        time.sleep(QUIET)
        stats = outbox.stats()
        assert (stats["queued"], stats["dead"], len(fake_gmail.messages)) == (1, 0, 0)
        assert stats["held"] >= 1
        assert fake_gmail.commands.count("MAIL") == 1  # no probe before the hour is over
    elif says.startswith(("backs off the connection", "retries")):
        assert wait_until(lambda: len(fake_gmail.messages) == 1), fake_gmail.commands
        stats = outbox.stats()
        assert (stats["retried"], stats["dead"]) == (1, 0)
    elif says.startswith("dead-letters"):
        stats = outbox.stats()
        assert (stats["queued"], stats["dead"], len(fake_gmail.messages)) == (0, 1, 0)
    else:
        pytest.fail(f"this test does not know what {says!r} means")


# -- the token endpoint ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "key"),
    [
        ("invalid_grant", "invalid_grant"),
        ("invalid_client", "invalid_client"),
        (500, "token endpoint down"),
    ],
)
def test_token_refresh_hints(
    fake_gmail: FakeGmail,
    fake_google_tokens: FakeGoogleTokens,
    tmp_path: Path,
    failure: str | int,
    key: str,
) -> None:
    token_file = fake_google_tokens.authorized_user_file(tmp_path / "token.json")
    fake_google_tokens.fail_next(failure)
    settings = fake_gmail.settings(
        app_password=None,
        oauth_token_file=str(token_file),
        oauth_token_uri=fake_google_tokens.token_uri,
        spool=None,
    )
    with (
        postbud.Mailer(settings) as mailer,
        pytest.raises(postbud.errors.TokenRefreshError) as info,
    ):
        mailer.send(TO, "Hello", "x")
    # Against the fake, the texts name its endpoint where they would name Google's.
    hint = (info.value.hint or "").replace(
        f"The token endpoint {fake_google_tokens.token_uri}", "Google's token endpoint"
    )
    assert hint == hints()[key]
    assert info.value.retryable is (failure == 500)


def test_the_delegation_hint(
    fake_gmail: FakeGmail, fake_google_tokens: FakeGoogleTokens, tmp_path: Path
) -> None:
    key_file = fake_google_tokens.service_account_file(tmp_path / "sa.json")
    fake_google_tokens.fail_next("unauthorized_client")
    settings = fake_gmail.settings(
        app_password=None,
        service_account_file=str(key_file),
        oauth_token_uri=fake_google_tokens.token_uri,
        spool=None,
    )
    with (
        postbud.Mailer(settings) as mailer,
        pytest.raises(postbud.errors.TokenRefreshError) as info,
    ):
        mailer.send(TO, "Hello", "x")
    assert not info.value.retryable
    assert info.value.hint == hints()["unauthorized_client"]


def test_every_quoted_hint_is_checked() -> None:
    checked = {f"{c} {e}" for c, e in INJECT} | {
        "535 5.7.8 oauth",
        "invalid_grant",
        "invalid_client",
        "token endpoint down",
        "unauthorized_client",
    }
    assert set(hints()) == checked


# -- links -------------------------------------------------------------------------------

#: The pages of issue 20 whose links this test follows.
NEW_PAGES = ["troubleshooting.md", "gmail-setup.md", "migrating.md", "benchmarks.md"]


@pytest.mark.parametrize("name", NEW_PAGES)
def test_links_to_headings_resolve(name: str) -> None:
    page = DOCS / name
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for link in LINK.finditer(text):
        target = DOCS / link["page"] if link["page"] else page
        assert target.exists(), f"{name}: no page {link['page']}"
        assert link["anchor"] in anchors(target), (
            f"{name}: no heading #{link['anchor']} in {target.name}"
        )
