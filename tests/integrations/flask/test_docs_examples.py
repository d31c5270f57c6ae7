"""docs/flask.md works as written (issue 19).

The page shows the files of docs/examples/flask/ word for word (tests/docs/test_docs.py
checks the Python ones; the templates are checked here). Here each one runs the way an
app runs it, against a FakeGmail that knows the docs' account (``me@gmail.com``) and
intercepts every connection, so config written for smtp.gmail.com runs unchanged:

- the shop app (``shop/``): its factory as written, a view that sends, one that submits,
  one that starts a thread; and the tests the page shows (``test_shop_mail.py``);
- the Flask-Mail app switched by its import line (``flask_mail_switch.py``);
- the page's tables: every ``MAIL_*`` and ``POSTBUD_*`` key the extension knows is
  there, and every row of ``| the app has | the error |`` is produced here and compared
  with the real error text.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask

import postbud
from flask_postbud import ExtensionError, Postbud, PostbudState
from flask_postbud._settings import _FLASK_MAIL, _TLS_FLAGS, CONFIG_KEYS
from postbud.testing import FakeGmail

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "flask.md"
EXAMPLES = ROOT / "docs" / "examples" / "flask"
#: The docs' account (the app password comes from GMAIL_APP_PASSWORD, as in the examples).
ACCOUNT = "me@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"


def import_shop() -> ModuleType:
    """The example package ``shop``, imported as pytest imports it for
    docs/examples/flask/test_shop_mail.py (that folder on ``sys.path``)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module("shop")


def load_example(name: str) -> ModuleType:
    """``docs/examples/flask/<name>.py`` as a new module (a module-level app runs anew)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_flask_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def _docs_ssl() -> Iterator[FakeGmail]:
    with FakeGmail("ssl", username=ACCOUNT, app_password=APP_PASSWORD) as fake:
        yield fake


@pytest.fixture(scope="module")
def _docs_starttls() -> Iterator[FakeGmail]:
    with FakeGmail("starttls", username=ACCOUNT, app_password=APP_PASSWORD) as fake:
        yield fake


def _intercepting(fake: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGmail]:
    monkeypatch.setenv("GMAIL_APP_PASSWORD", APP_PASSWORD)
    fake.reset()
    with fake.intercept():
        yield fake
    fake.reset()


@pytest.fixture
def docs_gmail(_docs_ssl: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGmail]:
    """Gmail on port 465 (the shop's default), for every postbud connection of the test."""
    yield from _intercepting(_docs_ssl, monkeypatch)


@pytest.fixture
def docs_gmail_587(
    _docs_starttls: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGmail]:
    """Gmail on port 587 with STARTTLS (the Flask-Mail app's config)."""
    yield from _intercepting(_docs_starttls, monkeypatch)


@pytest.fixture
def shop(apps: list[Flask]) -> Callable[..., Flask]:
    """``shop(config=None)``: the example's ``create_app``; the app is closed after the test."""
    module = import_shop()

    def make(config: dict[str, Any] | None = None) -> Flask:
        app = module.create_app(config)
        assert isinstance(app, Flask)
        apps.append(app)
        return app

    return make


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- the shop, as written ----------------------------------------------------------------


def test_the_quick_start_sends_as_written(
    shop: Callable[..., Flask], docs_gmail: FakeGmail
) -> None:
    app = shop()
    response = app.test_client().post("/signup", data={"email": "ann@example.com", "name": "Ann"})
    assert response.status_code == 200
    [received] = docs_gmail.messages
    assert received.authenticated_as == ACCOUNT
    assert received["From"] == "My Shop <me@gmail.com>"  # POSTBUD_SENDER
    assert received["Subject"] == "Welcome to My Shop"
    assert received.text is not None and "Hello Ann," in received.text
    assert received.html is not None and "<b>My Shop</b>" in received.html
    settings = import_shop().postbud.mailer(app=app).settings
    assert (settings.host, settings.port, settings.security, settings.timeout) == (
        "smtp.gmail.com",
        465,
        "ssl",
        10,
    )


def test_the_receipt_is_submitted_and_sent_after_the_response(
    shop: Callable[..., Flask], docs_gmail: FakeGmail
) -> None:
    app = shop()
    docs_gmail.delay(0.3, "DATA")  # a slow Gmail: the view does not wait for it
    response = app.test_client().post("/orders/7/receipt", data={"email": "bob@example.com"})
    assert response.status_code == 200
    assert docs_gmail.messages == []
    assert import_shop().postbud.flush(10, app=app)
    [received] = docs_gmail.messages
    assert received["Message-ID"] == response.text
    assert received.html is not None and "<b>12.50 EUR</b>" in received.html
    assert received.text is not None and "order 7" in received.text  # written from the HTML
    [attachment] = received.message.iter_attachments()
    assert attachment.get_filename() == "receipt-7.csv"
    assert attachment.get_content_type() == "text/csv"


def test_the_report_thread_sends_with_app(
    shop: Callable[..., Flask], docs_gmail: FakeGmail
) -> None:
    app = shop()
    response = app.test_client().post("/reports", data={"email": "boss@example.com"})
    assert response.status_code == 202
    assert wait_for(lambda: len(docs_gmail.messages) == 1)
    [received] = docs_gmail.messages
    assert received["Subject"] == "Your weekly report"
    assert received.text is not None and "3 orders this week." in received.text


def test_the_report_job_without_app_is_the_documented_error(
    shop: Callable[..., Flask], docs_gmail: FakeGmail
) -> None:
    shop()
    jobs = importlib.import_module("shop.jobs")
    errors: list[BaseException] = []

    def without_app() -> None:
        try:
            jobs.postbud.send(to="boss@example.com", subject="Report", text="x")
        except ExtensionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=without_app)
    thread.start()
    thread.join(10)
    [error] = errors
    assert "pass app=app" in str(error)
    assert docs_gmail.messages == []


def test_without_the_app_password_the_shop_does_not_start(
    shop: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GMAIL_APP_PASSWORD", raising=False)
    with pytest.raises(postbud.ConfigurationError, match="set POSTBUD_APP_PASSWORD"):
        shop()
    assert isinstance(shop({"TESTING": True}).extensions["postbud"], PostbudState)


#: The tests docs/examples/flask/test_shop_mail.py has (a new one must be added here).
SHOP_TESTS = {
    "test_signup_mails_a_welcome",
    "test_a_name_is_escaped_in_the_html_part",
    "test_a_report_from_a_thread",
    "test_the_receipt_reaches_gmail",
}


@pytest.mark.parametrize("name", sorted(SHOP_TESTS))
def test_the_pages_tests_pass(name: str, shop: Callable[..., Flask], fake_gmail: FakeGmail) -> None:
    import_shop()
    module = load_example("test_shop_mail")
    found = {n for n, f in vars(module).items() if n.startswith("test_") and inspect.isfunction(f)}
    assert found == SHOP_TESTS
    test = getattr(module, name)
    fixtures = {"app": lambda: shop({"TESTING": True}), "fake_gmail": lambda: fake_gmail}
    test(**{arg: fixtures[arg]() for arg in inspect.signature(test).parameters})
    if name == "test_the_receipt_reaches_gmail":
        assert len(fake_gmail.messages) == 1  # it really sent
    else:
        assert fake_gmail.connections == 0  # suppressed: nothing left the process


# -- the Flask-Mail app switched by its import line ----------------------------------------


def test_the_flask_mail_switch_as_written(docs_gmail_587: FakeGmail, apps: list[Flask]) -> None:
    module = load_example("flask_mail_switch")
    app = module.app
    apps.append(app)
    assert type(module.mail) is Postbud
    client = app.test_client()
    assert client.post("/invite").status_code == 200
    assert client.post("/newsletter").status_code == 200
    invite, *news = docs_gmail_587.messages
    assert "STARTTLS" in docs_gmail_587.commands
    assert invite["From"] == "My Shop <me@gmail.com>"  # MAIL_DEFAULT_SENDER, a tuple
    assert invite["To"] == "Ann Example <ann@example.com>"
    assert invite.html is not None and "<b>Friday</b>" in invite.html
    [agenda] = invite.message.iter_attachments()
    assert agenda.get_filename() == "agenda.txt"
    assert [m.recipients for m in news] == [("a@example.com",), ("b@example.com",)]
    assert docs_gmail_587.connections == 1  # the app's one connection, kept
    settings = module.mail.mailer(app=app).settings
    assert (settings.host, settings.port, settings.security) == ("smtp.gmail.com", 587, "starttls")


# -- the page's files and tables -------------------------------------------------------------

OTHER_FILE = re.compile(
    r"<!-- file: (?P<path>\S+) -->\n```(?!python\n)[\w+-]+\n(?P<code>.*?)```", re.S
)


def test_the_templates_on_the_page_are_the_files() -> None:
    shown = list(OTHER_FILE.finditer(PAGE.read_text()))
    assert len(shown) >= 2
    for block in shown:
        assert (ROOT / block["path"]).read_text() == block["code"], block["path"]


def _table(header: str) -> list[list[str]]:
    match = re.search(rf"^{re.escape(header)}\n\|[-|]+\|\n((?:\|.*\n)+)", PAGE.read_text(), re.M)
    assert match, f"docs/flask.md has no table {header!r}"
    return [row.strip("|").split(" | ") for row in match[1].splitlines()]


def test_the_flask_mail_table_names_every_key() -> None:
    documented = {
        key
        for row in _table("| Flask-Mail | postbud | notes |")
        for key in re.findall(r"MAIL_[A-Z_]+", row[0])
    }
    read = {*_FLASK_MAIL, *_TLS_FLAGS, "MAIL_SUPPRESS_SEND"}
    not_read = {"MAIL_DEBUG", "MAIL_MAX_EMAILS", "MAIL_ASCII_ATTACHMENTS"}
    assert documented == read | not_read


def test_every_postbud_key_is_on_the_page() -> None:
    rows = _table("| key | meaning |")
    listed = set(re.findall(r"POSTBUD_[A-Z_]+", "\n".join(row[0] for row in rows)))
    assert listed == set(CONFIG_KEYS)


# -- the documented error texts -------------------------------------------------------------

CREDENTIALS = {"POSTBUD_USERNAME": ACCOUNT, "POSTBUD_APP_PASSWORD": APP_PASSWORD}
MAIL_CREDENTIALS = {"MAIL_USERNAME": ACCOUNT, "MAIL_PASSWORD": APP_PASSWORD}
#: Makes one mistake; returns where it raised ("init_app", "mail", "call") and the error.
Mistake = Callable[[pytest.MonkeyPatch], tuple[str, BaseException]]


def _config(config: dict[str, Any], env: dict[str, str] | None = None) -> Mistake:
    def make(monkeypatch: pytest.MonkeyPatch) -> tuple[str, BaseException]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        app = Flask("shop")
        app.config.update(config)
        extension = Postbud()
        try:
            extension.init_app(app)
        except postbud.ConfigurationError as exc:
            return "init_app", exc
        try:
            with app.app_context():
                extension.send("you@example.com", "Hi", "x")
        except postbud.ConfigurationError as exc:
            return "mail", exc
        finally:
            state = app.extensions.get("postbud")
            if isinstance(state, PostbudState):
                state.close(0)
        raise AssertionError(f"{config} raised nothing")

    return make


def _twice(monkeypatch: pytest.MonkeyPatch) -> tuple[str, BaseException]:
    app = import_shop().create_app({"TESTING": True})
    try:
        import_shop().postbud.init_app(app)
    except ExtensionError as exc:
        return "call", exc
    finally:
        app.extensions["postbud"].close(0)
    raise AssertionError("a second init_app raised nothing")


def _thread_without_app(monkeypatch: pytest.MonkeyPatch) -> tuple[str, BaseException]:
    errors: list[BaseException] = []

    def job() -> None:
        try:
            Postbud().send("you@example.com", "Hi", "x")
        except ExtensionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(10)
    [error] = errors
    return "call", error


def _other_app(monkeypatch: pytest.MonkeyPatch) -> tuple[str, BaseException]:
    try:
        Postbud().send("you@example.com", "Hi", "x", app=Flask("other"))
    except ExtensionError as exc:
        return "call", exc
    raise AssertionError("an app without init_app raised nothing")


#: The first cell of each row of the page's error table -> (where it raises, how to make it).
MISTAKES: dict[str, tuple[str, Mistake]] = {
    '`POSTBUD_USERNMAE = "me@gmail.com"`': ("init_app", _config({"POSTBUD_USERNMAE": ACCOUNT})),
    "`POSTBUD_USERNAME` in the config, the app password in `$POSTBUD_APP_PASSWORD`": (
        "init_app",
        _config({"POSTBUD_USERNAME": ACCOUNT}, {"POSTBUD_APP_PASSWORD": APP_PASSWORD}),
    ),
    "`MAIL_USERNAME` without `MAIL_PASSWORD`": ("init_app", _config({"MAIL_USERNAME": ACCOUNT})),
    "no account at all, and not `TESTING`": ("mail", _config({})),
    "`MAIL_USE_SSL` and `MAIL_USE_TLS` both `True`": (
        "init_app",
        _config({**MAIL_CREDENTIALS, "MAIL_USE_SSL": True, "MAIL_USE_TLS": True}),
    ),
    "`MAIL_PORT = 465` with `MAIL_USE_TLS = True`": (
        "init_app",
        _config({**MAIL_CREDENTIALS, "MAIL_PORT": 465, "MAIL_USE_TLS": True}),
    ),
    '`MAIL_PORT = "four-six-five"`': (
        "init_app",
        _config({**MAIL_CREDENTIALS, "MAIL_PORT": "four-six-five"}),
    ),
    '`MAIL_USE_TLS = "yes"`': ("init_app", _config({**MAIL_CREDENTIALS, "MAIL_USE_TLS": "yes"})),
    '`MAIL_DEFAULT_SENDER = ("My Shop",)`': (
        "init_app",
        _config({**MAIL_CREDENTIALS, "MAIL_DEFAULT_SENDER": ("My Shop",)}),
    ),
    '`POSTBUD_SECURITY = "tls"`': ("init_app", _config({**CREDENTIALS, "POSTBUD_SECURITY": "tls"})),
    # Without credentials in the config, these two wait for the first mail.
    '`POSTBUD_SUPPRESS_SEND = "yes"`': ("mail", _config({"POSTBUD_SUPPRESS_SEND": "yes"})),
    "`MAIL_SUPPRESS_SEND = 1`": ("mail", _config({"MAIL_SUPPRESS_SEND": 1})),
    "`POSTBUD_USERNAM` in the environment": (
        "init_app",
        _config(CREDENTIALS, {"POSTBUD_USERNAM": ACCOUNT}),
    ),
    "`postbud.init_app(app)` twice": ("call", _twice),
    "`postbud.send(...)` in a thread, without `app=`": ("call", _thread_without_app),
    "`postbud.send(..., app=other)`, `other` never given to `init_app`": ("call", _other_app),
}
ROW = re.compile(r"^\| (?P<mistake>.+?) \| (?P<tick>`+) ?(?P<message>.+?) ?(?P=tick) \|$", re.M)


def error_rows() -> list[tuple[str, str]]:
    table = re.search(
        r"^\| the app has \| the error \|\n\|---\|---\|\n((?:\|.*\n)+)", PAGE.read_text(), re.M
    )
    assert table, "docs/flask.md has no | the app has | the error | table"
    return [(row["mistake"], row["message"]) for row in ROW.finditer(table[1])]


def test_every_documented_error_is_produced() -> None:
    rows = error_rows()
    assert len(rows) == len(MISTAKES)
    assert {mistake for mistake, _ in rows} == set(MISTAKES)


@pytest.mark.parametrize(("mistake", "message"), error_rows())
def test_documented_error_texts_are_the_real_ones(
    mistake: str, message: str, monkeypatch: pytest.MonkeyPatch, docs_gmail: FakeGmail
) -> None:
    for key in ("POSTBUD_USERNAME", "POSTBUD_APP_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    where, make = MISTAKES[mistake]
    raised, error = make(monkeypatch)
    assert raised == where
    assert isinstance(error, ExtensionError if where == "call" else postbud.ConfigurationError)
    assert str(error) == message
    assert docs_gmail.messages == []


# -- error alerts ----------------------------------------------------------------------------


def test_the_alerting_example_mails_once_and_counts_the_rest(
    docs_gmail: FakeGmail, apps: list[Flask]
) -> None:
    module = load_example("alerting")
    app = module.app
    apps.append(app)
    client = app.test_client()
    client.set_cookie("session", "SECRET-1")
    for order_id in (1, 2, 3):  # one error, three requests: one mail and a count
        response = client.get(f"/orders/{order_id}", headers={"Authorization": "Bearer SECRET-2"})
        assert response.status_code == 500
    alerts = app.extensions["postbud"].alerts
    alerts.flush()  # what the handler's thread does within a tick, and at exit
    assert module.postbud.flush(10, app=app)
    first, follow_up = docs_gmail.messages
    assert first.recipients == ("oncall@example.com",)
    subject = str(first["Subject"])
    assert subject.startswith("[shop-prod] [ERROR] ")  # the tag, then the level
    assert subject.endswith("Exception on /orders/1 [GET]")  # Flask's own words
    body = first.message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "LookupError: order 1 is not in the database" in text
    assert "URL:            http://localhost/orders/1" in text
    assert "Cookie: ********" in text and "Authorization: ********" in text
    raw = first.data.decode("utf-8", "replace")
    assert "SECRET-1" not in raw and "SECRET-2" not in raw
    # The two repeats, in one follow-up that shows the last of them.
    assert "Exception on /orders/3 [GET] (2 more since " in str(follow_up["Subject"])
