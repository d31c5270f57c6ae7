"""Error alerts of Flask apps (``POSTBUD_ALERTS_TO``), against FakeGmail over TLS.

The app is ``flask_alerts_app.py`` (a factory, one ``Postbud()``); its views fail and
the test client calls them. The handler's thread is not waited for: the tests call its
``tick``/``flush`` controls, as tests/core/test_alerts.py does.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import postbud
from flask_postbud import Postbud
from flask_postbud._app_alerts import AppAlerts
from postbud.testing import FakeGmail, ReceivedMessage

OPS = "ops@example.com"
SECRETS = ("s3cr3t-pa55", "4242424242424242", "sessid-abc123", "bearer-xyz789", "k-777")

AppMaker = Callable[..., Flask]
Config = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def alertapp(load_module: Callable[..., types.ModuleType]) -> types.ModuleType:
    return load_module("flask_alerts_app")


@pytest.fixture
def make(alertapp: types.ModuleType, apps: list[Flask]) -> AppMaker:
    """``make(config)``: an app of ``flask_alerts_app``, closed after the test."""

    def build(config: dict[str, Any]) -> Flask:
        app = alertapp.create_app(config)
        assert isinstance(app, Flask)
        apps.append(app)
        return app

    return build


@pytest.fixture
def ext(alertapp: types.ModuleType) -> Postbud:
    extension = alertapp.postbud
    assert isinstance(extension, Postbud)
    return extension


def alerts_of(app: Flask) -> AppAlerts:
    found = app.extensions["postbud"].alerts
    assert isinstance(found, AppAlerts)
    return found


def delivered(app: Flask, fake: FakeGmail, *, force: bool = False) -> list[ReceivedMessage]:
    """Tick (or flush), wait for the outbox, return what FakeGmail received."""
    alerts = alerts_of(app)
    if force:
        alerts.flush()
    else:
        alerts.tick()
    assert alerts.wait(10)
    return list(fake.messages)


def kinds(fake: FakeGmail) -> list[tuple[str | None, str | None]]:
    return [(m["X-Postbud-Alert"], m["X-Postbud-Count"]) for m in fake.messages]


# -- one error, one alert; repeats counted -----------------------------------------------


def test_a_route_that_raises_mails_one_alert_and_counts_the_repeats(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    client = app.test_client()
    for order in (17, 18, 19):  # one error on three URLs: one fingerprint
        assert client.get(f"/orders/{order}").status_code == 500
    [first] = delivered(app, fake_gmail)
    # got_request_exception and log_exception both saw each error: counted once.
    assert alerts_of(app).stats()["records"] == 3
    assert first.recipients == (OPS,)
    assert first["Subject"] == f"[ERROR] {app.logger.name}: Exception on /orders/17 [GET]"
    assert (first["X-Postbud-Alert"], first["X-Postbud-Count"]) == ("first", "1")
    text = first.text or ""
    assert "ConnectionError: payment provider unreachable" in text
    assert "URL:            http://localhost/orders/17" in text

    follow = delivered(app, fake_gmail, force=True)[-1]
    assert (follow["X-Postbud-Alert"], follow["X-Postbud-Count"]) == ("follow-up", "2")
    assert "Exception on /orders/19 [GET]" in " ".join((follow.text or "").split())
    assert kinds(fake_gmail) == [("first", "1"), ("follow-up", "2")]


def test_an_error_the_app_logs_itself_is_mailed_with_its_request(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    response = app.test_client().get("/refund?code=503", headers={"User-Agent": "shop/2.1"})
    assert response.text == "refund queued"
    [mail] = delivered(app, fake_gmail)
    assert mail["Subject"] == f"[ERROR] {app.logger.name}: refund failed: provider answered 503"
    text = mail.text or ""
    assert "Endpoint:       refund" in text
    assert "User agent:     shop/2.1" in text
    assert "Form:" not in text  # a GET without a body: nothing to say about it


# -- the request, with its secrets masked ------------------------------------------------


def test_the_mail_shows_the_request_and_masks_cookies_authorization_and_secrets(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    client = app.test_client()
    client.set_cookie("session", "sessid-abc123")
    response = client.post(
        "/checkout?page=2&access_token=k-777",
        data={"name": "Ann <b>", "password": "s3cr3t-pa55", "card_number": "4242424242424242"},
        headers={
            "Authorization": "Bearer bearer-xyz789",
            "X-Api-Key": "k-777",
            "X-Request-Id": "req-42",
            "User-Agent": "Mozilla/5.0 (test)",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert response.status_code == 500
    [mail] = delivered(app, fake_gmail)
    text = mail.text or ""
    page = mail.html or ""
    for line in (
        "Method:         POST",
        "URL:            http://localhost/checkout?page=2&access_token=********",
        "Endpoint:       checkout",
        "Remote address: 203.0.113.9",
        "User agent:     Mozilla/5.0 (test)",
        "  X-Request-Id: req-42",
        "  Cookie: ********",
        "  Authorization: ********",
        "  X-Api-Key: ********",
        "  name: Ann <b>",
        "  password: ********",
        "  card_number: ********",
    ):
        assert line in text, line
    assert "Ann &lt;b&gt;" in page and "Ann <b>" not in page  # escaped in the HTML
    assert "req-42" in page and "203.0.113.9" in page
    raw = mail.data.decode("utf-8", "replace")
    for secret in SECRETS:  # nowhere: not in the text, the HTML or a header
        assert secret not in raw, secret


def test_a_body_the_view_did_not_read_is_not_read_for_the_alert(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    response = app.test_client().post("/webhook", data={"note": "unread-field-value"})
    assert response.status_code == 500
    [mail] = delivered(app, fake_gmail)
    text = mail.text or ""
    assert "(not shown): the view did not read the request body" in text
    assert "unread-field-value" not in mail.data.decode()


def test_the_user_id_comes_from_flask_login_when_the_app_uses_it(
    make: AppMaker,
    config_for: Config,
    fake_gmail: FakeGmail,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Flask-Login is not installed here: the app stands for one that uses it (the
    # module imported, app.login_manager set, the view's user in g._login_user).
    monkeypatch.setitem(sys.modules, "flask_login", types.ModuleType("flask_login"))
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    app.login_manager = object()  # type: ignore[attr-defined]
    assert app.test_client().get("/account").status_code == 500
    [mail] = delivered(app, fake_gmail)
    assert "User:           17" in (mail.text or "")


def test_without_a_loaded_user_the_id_comes_from_flask_logins_session(
    make: AppMaker,
    config_for: Config,
    fake_gmail: FakeGmail,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "flask_login", types.ModuleType("flask_login"))
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS, "SECRET_KEY": "k"})
    app.login_manager = object()  # type: ignore[attr-defined]
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "42"  # what login_user() keeps in the session
    response = client.get("/orders/3")
    assert response.status_code == 500
    [mail] = delivered(app, fake_gmail)
    assert "User:           42" in (mail.text or "")


def test_without_flask_login_no_user_line(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    assert "flask_login" not in sys.modules
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    app.test_client().get("/account")
    [mail] = delivered(app, fake_gmail)
    assert "LookupError: no account row for user 17" in (mail.text or "")
    assert "User:" not in (mail.text or "")


# -- debug, testing, suppression ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["TESTING", "DEBUG"])
def test_off_under_testing_or_debug_unless_forced(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail, mode: str
) -> None:
    # PROPAGATE_EXCEPTIONS off: Flask logs the error (log_exception), as in production.
    config = {
        **config_for(fake_gmail),
        "POSTBUD_ALERTS_TO": OPS,
        "POSTBUD_SUPPRESS_SEND": False,
        "PROPAGATE_EXCEPTIONS": False,
        mode: True,
    }
    quiet = make(config)
    assert quiet.test_client().get("/orders/1").status_code == 500
    alerts = alerts_of(quiet)
    alerts.flush()
    assert alerts.handlers == []  # not even a handler was made
    assert fake_gmail.messages == []

    loud = make({**config, "POSTBUD_ALERTS_FORCE": True})
    assert loud.test_client().get("/orders/1").status_code == 500
    [mail] = delivered(loud, fake_gmail)
    assert "Exception on /orders/1 [GET]" in str(mail["Subject"])


def test_testing_is_read_at_each_error_not_at_init_app(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS, "PROPAGATE_EXCEPTIONS": False})
    app.config["TESTING"] = True  # as tests do, after the factory
    assert app.test_client().get("/orders/1").status_code == 500
    assert alerts_of(app).stats()["records"] == 0


def test_re_raised_errors_are_alerted_through_got_request_exception(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    # TESTING: Flask re-raises into the test client and never calls log_exception.
    app = make(
        {
            **config_for(fake_gmail),
            "TESTING": True,
            "POSTBUD_ALERTS_TO": OPS,
            "POSTBUD_ALERTS_FORCE": True,
            "POSTBUD_SUPPRESS_SEND": False,
        }
    )
    client = app.test_client()
    for _ in range(2):
        with pytest.raises(ConnectionError, match="payment provider unreachable"):
            client.post("/checkout", data={"card_number": "4242424242424242"})
    [mail] = delivered(app, fake_gmail)
    assert mail["Subject"] == f"[ERROR] {app.logger.name}: Exception on /checkout [POST]"
    assert "  card_number: ********" in (mail.text or "")
    follow = delivered(app, fake_gmail, force=True)[-1]
    assert follow["X-Postbud-Count"] == "1"
    assert alerts_of(app).stats()["records"] == 2


def test_under_suppression_alerts_are_recorded_not_sent(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail, ext: Postbud
) -> None:
    app = make(
        {
            **config_for(fake_gmail),
            "TESTING": True,
            "POSTBUD_ALERTS_TO": OPS,
            "POSTBUD_ALERTS_FORCE": True,
        }
    )
    with ext.record_messages() as outbox:
        with pytest.raises(ConnectionError):
            app.test_client().get("/orders/5")
        alerts_of(app).flush()
    [alert] = outbox
    assert alert.subject == f"[ERROR] {app.logger.name}: Exception on /orders/5 [GET]"
    assert alert.recipients == [OPS]
    assert alert.body is not None and "Endpoint:       order" in alert.body
    assert alert.message["X-Postbud-Alert"] == "first"
    assert fake_gmail.messages == []
    assert fake_gmail.connections == 0  # nothing left the process


# -- two apps on one logger --------------------------------------------------------------


def test_two_apps_sharing_a_logger_each_mail_once_with_their_own_config(
    make: AppMaker,
    config_for: Config,
    fake_gmail: FakeGmail,
    fake_gmail_starttls: FakeGmail,
) -> None:
    one = make(
        {**config_for(fake_gmail), "POSTBUD_ALERTS_TO": "a@example.com", "POSTBUD_ALERT_TAG": "one"}
    )
    two = make(
        {
            **config_for(fake_gmail_starttls),
            "POSTBUD_ALERTS_TO": "b@example.com, c@example.com",
            "POSTBUD_ALERT_TAG": "two",
        }
    )
    assert one.logger is two.logger  # one import name
    assert sum(type(h).__name__ == "_Router" for h in one.logger.handlers) == 1

    assert one.test_client().get("/orders/1").status_code == 500
    [mail] = delivered(one, fake_gmail)
    assert str(mail["Subject"]).startswith("[one] [ERROR]")
    assert mail.recipients == ("a@example.com",)
    assert delivered(two, fake_gmail_starttls) == []

    assert two.test_client().get("/orders/2").status_code == 500
    [other] = delivered(two, fake_gmail_starttls)
    assert str(other["Subject"]).startswith("[two] [ERROR]")
    assert "/orders/2" in str(other["Subject"])
    assert set(other.recipients) == {"b@example.com", "c@example.com"}
    assert len(delivered(one, fake_gmail)) == 1
    assert alerts_of(one).stats()["records"] == alerts_of(two).stats()["records"] == 1

    one.logger.error("logged outside any app context")  # goes to the last app: two
    assert alerts_of(one).stats()["records"] == 1
    assert alerts_of(two).stats()["records"] == 2


def test_an_app_without_alerts_on_a_shared_logger_mails_nothing(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    with_alerts = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    without = make(config_for(fake_gmail))
    assert without.extensions["postbud"].alerts is None
    assert without.test_client().get("/orders/1").status_code == 500
    assert delivered(with_alerts, fake_gmail) == []
    assert alerts_of(with_alerts).stats()["records"] == 0


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ops-at-example.com", "'ops-at-example.com' is not an email address"),
        (["ops@example.com", "nobody"], "'nobody' is not an email address"),
        (42, "not int 42"),
        ({"to": "ops@example.com"}, "not dict"),
        (",", "no address"),
    ],
)
def test_a_bad_alerts_to_fails_init_app_naming_the_key(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail, value: Any, says: str
) -> None:
    with pytest.raises(postbud.ConfigurationError, match="POSTBUD_ALERTS_TO") as caught:
        make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": value})
    assert says in str(caught.value)


def test_a_bad_force_value_fails_init_app_and_leaves_the_app_unregistered(
    alertapp: types.ModuleType, config_for: Config, fake_gmail: FakeGmail, apps: list[Flask]
) -> None:
    app = Flask("flask_alerts_bad_force")
    app.config.update({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    app.config["POSTBUD_ALERTS_FORCE"] = "yes"
    with pytest.raises(postbud.ConfigurationError, match="POSTBUD_ALERTS_FORCE must be True"):
        alertapp.postbud.init_app(app)
    assert "postbud" not in app.extensions  # so init_app may be called again
    app.config["POSTBUD_ALERTS_FORCE"] = True
    alertapp.postbud.init_app(app)
    apps.append(app)
    assert alerts_of(app).to == (OPS,)


def test_without_an_account_the_first_error_says_so_once_and_never_raises(
    make: AppMaker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("POSTBUD_USERNAME", "POSTBUD_APP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    app = make({"POSTBUD_ALERTS_TO": OPS})  # no credentials yet: not an init_app error
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="postbud"):
        for _ in range(3):
            assert client.get("/orders/1").status_code == 500
    said = [r.getMessage() for r in caplog.records if r.name == "postbud"]
    assert len(said) == 1
    assert "cannot send the alerts of the Flask app" in said[0]
    assert "POSTBUD_USERNAME" in said[0]
    assert alerts_of(app).handlers == []


def test_no_alerts_to_means_no_handler(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": ""})
    assert app.extensions["postbud"].alerts is None


# -- never raise, never wait -------------------------------------------------------------


def test_with_gmail_down_logging_returns_at_once_and_never_raises(
    make: AppMaker, fake_gmail: FakeGmail, config_for: Config
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: every connection is refused
        app = make(
            {
                **config_for(fake_gmail, port=port, timeout=1, exit_timeout=0.2),
                "POSTBUD_ALERTS_TO": OPS,
            }
        )
        client = app.test_client()
        started = time.perf_counter()
        for n in range(20):
            assert client.get(f"/orders/{n}").status_code == 500
        assert time.perf_counter() - started < 2  # no request waited for Gmail
        with app.test_request_context("/jobs"):
            slowest = 0.0
            for _ in range(100):
                started = time.perf_counter()
                app.logger.error("the queue is stuck")
                slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.1
        alerts = alerts_of(app)
        alerts.tick()
        assert alerts.stats()["records"] == 120
        assert alerts.stats()["first"] == 2
        app.extensions["postbud"].close(0.2)
    assert fake_gmail.messages == []


def test_logging_never_waits_for_a_thread_that_holds_the_handler_lock(
    make: AppMaker, config_for: Config, fake_gmail: FakeGmail
) -> None:
    app = make({**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS})
    [router] = [h for h in app.logger.handlers if type(h).__name__ == "_Router"]
    assert router.lock is not None
    held, done = threading.Event(), threading.Event()

    def hold() -> None:  # another thread inside the handler's lock (a flush, say)
        with router.lock:  # type: ignore[union-attr]
            held.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        started = time.perf_counter()
        with app.test_request_context("/"):
            app.logger.error("still counted")
            logging.getLogger(f"{app.logger.name}.jobs").error("a module of the app")
        assert time.perf_counter() - started < 1
    finally:
        done.set()
        holder.join()
    assert alerts_of(app).stats()["records"] == 2


CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("flask_alerts_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
app = module.create_app(json.loads(sys.argv[2]))
client = app.test_client()
for order in (1, 2, 3):
    assert client.get(f"/orders/{order}").status_code == 500
alerts = app.extensions["postbud"].alerts
alerts.tick()
assert alerts.wait(10)  # the first alert went out: the Mailer has nothing left to do
# No close, no flush: the process ends; the exit hooks send the follow-up.
"""


def test_at_exit_the_first_alert_and_the_follow_up_go_out(
    config_for: Config, fake_gmail: FakeGmail
) -> None:
    config = {**config_for(fake_gmail), "POSTBUD_ALERTS_TO": OPS}
    script = str(Path(__file__).with_name("flask_alerts_app.py"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, script, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert "Traceback" not in child.stderr.split("ConnectionError: payment")[-1]
    assert kinds(fake_gmail) == [("first", "1"), ("follow-up", "2")]


@pytest.fixture(autouse=True)
def _no_leftover_handlers(alertapp: types.ModuleType) -> Iterator[None]:
    yield
    # The one handler per logger stays (apps of the module share it); every app's
    # alert handlers are closed by the apps fixture with the app's state.
    logger = logging.getLogger(alertapp.__name__)
    assert sum(type(h).__name__ == "_Router" for h in logger.handlers) <= 1
