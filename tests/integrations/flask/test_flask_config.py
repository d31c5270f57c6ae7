"""The config lookup: POSTBUD_* keys, then Flask-Mail's MAIL_* keys, then the POSTBUD_*
environment; errors at init_app (or at first use) naming the key the app wrote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

import postbud
from flask_postbud import Postbud
from postbud.testing import FakeGmail

AppMaker = Callable[..., Flask]
Config = Callable[..., dict[str, Any]]


def flask_mail_config(fake: FakeGmail, **overrides: Any) -> dict[str, Any]:
    """A Flask-Mail app's config for ``fake``, plus the CA postbud must trust."""
    config: dict[str, Any] = {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": fake.port,
        "MAIL_USE_SSL": fake.mode == "ssl",
        "MAIL_USE_TLS": fake.mode == "starttls",
        "MAIL_USERNAME": fake.username,
        "MAIL_PASSWORD": fake.app_password,
        "POSTBUD_CA_FILE": fake.ca_file,
    }
    config.update(overrides)
    return config


# -- errors that name the key -----------------------------------------------------------


def test_a_typo_in_a_config_key_raises_at_init_app(make_app: AppMaker) -> None:
    with pytest.raises(postbud.ConfigurationError) as caught:
        make_app({"POSTBUD_USERNMAE": "me@gmail.com"})
    assert str(caught.value) == (
        "Unknown postbud setting POSTBUD_USERNMAE. Did you mean POSTBUD_USERNAME?"
    )


def test_a_typo_in_the_environment_names_the_variable(
    make_app: AppMaker, ext: Postbud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUD_USERNMAE", "me@gmail.com")
    app = make_app({"TESTING": True})
    with app.app_context(), pytest.raises(postbud.ConfigurationError) as caught:
        ext.send("you@example.com", "Hi", "x")
    assert "$POSTBUD_USERNMAE" in str(caught.value)
    assert "Did you mean $POSTBUD_USERNAME?" in str(caught.value)


def test_adapter_only_names_in_the_environment_are_no_error(
    make_app: AppMaker, ext: Postbud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUD_SUPPRESS_SEND", "1")
    monkeypatch.setenv("POSTBUD_ALERTS_TO", "ops@example.com")
    app = make_app({"TESTING": True})
    with ext.record_messages() as outbox, app.app_context():
        ext.send("you@example.com", "Hi", "x")
    assert len(outbox) == 1


def test_ssl_and_tls_both_on_is_a_contradiction_naming_both(
    make_app: AppMaker, fake_gmail: FakeGmail
) -> None:
    with pytest.raises(postbud.ConfigurationError) as caught:
        make_app(flask_mail_config(fake_gmail, MAIL_USE_TLS=True))
    assert "MAIL_USE_SSL and MAIL_USE_TLS are both True" in str(caught.value)


def test_missing_credentials_name_the_postbud_key(make_app: AppMaker) -> None:
    with pytest.raises(postbud.ConfigurationError, match="POSTBUD_APP_PASSWORD"):
        make_app({"POSTBUD_USERNAME": "me@gmail.com"})


def test_missing_credentials_of_a_flask_mail_app_name_mail_password(make_app: AppMaker) -> None:
    with pytest.raises(postbud.ConfigurationError, match="MAIL_PASSWORD"):
        make_app({"MAIL_USERNAME": "me@gmail.com"})


def test_a_bad_value_names_the_flask_mail_key(make_app: AppMaker, fake_gmail: FakeGmail) -> None:
    with pytest.raises(postbud.ConfigurationError, match="MAIL_PORT"):
        make_app(flask_mail_config(fake_gmail, MAIL_PORT="lots"))
    with pytest.raises(postbud.ConfigurationError, match="MAIL_USE_SSL must be True or False"):
        make_app(flask_mail_config(fake_gmail, MAIL_USE_SSL="yes"))


def test_without_credentials_init_app_waits_for_the_first_send(
    make_app: AppMaker, ext: Postbud, fake_gmail: FakeGmail, config_for: Config
) -> None:
    app = make_app({})  # the factory fills the config later
    with app.app_context(), pytest.raises(postbud.ConfigurationError, match="POSTBUD_USERNAME"):
        ext.send("you@example.com", "Hi", "x")
    app.config.update(config_for(fake_gmail))
    with app.app_context():
        ext.send("you@example.com", "Later", "x")
    assert [m["Subject"] for m in fake_gmail.messages] == ["Later"]


def test_secrets_stay_out_of_errors_and_reprs(make_app: AppMaker, ext: Postbud) -> None:
    secret = "wxyz wxyz wxyz wxyz"
    with pytest.raises(postbud.ConfigurationError) as caught:
        make_app({"POSTBUD_APP_PASSWORD": secret, "POSTBUD_PORT": "x"})
    assert "wxyz" not in str(caught.value)
    assert caught.value.__cause__ is None
    app = make_app({"TESTING": True, "POSTBUD_USERNAME": "me@gmail.com"})
    app.config["POSTBUD_APP_PASSWORD"] = secret
    with app.app_context():
        settings = ext.mailer().settings
    assert "wxyz" not in repr(settings) + repr(app.extensions["postbud"])


STATE_PASSWORD = "s3cret-state-pass"


def test_the_state_password_stays_out_of_errors_and_reprs(make_app: AppMaker, ext: Postbud) -> None:
    account = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": "abcdabcdabcdabcd"}
    with pytest.raises(postbud.ConfigurationError) as caught:
        make_app({**account, "POSTBUD_STATE": f"redis://:{STATE_PASSWORD}@127.0.0.1:99999/0"})
    assert str(caught.value).startswith(
        "POSTBUD_STATE 'redis://:********@127.0.0.1:99999/0' is not a valid URL"
    )
    assert STATE_PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None
    with pytest.raises(postbud.ConfigurationError) as caught:
        make_app({**account, "POSTBUD_STATE_PASSWORD": STATE_PASSWORD, "POSTBUD_PORT": "x"})
    assert STATE_PASSWORD not in str(caught.value)
    app = make_app(
        {
            "TESTING": True,
            **account,
            "POSTBUD_STATE": "redis://127.0.0.1:1/0",
            "POSTBUD_STATE_PASSWORD": STATE_PASSWORD,
        }
    )
    with app.app_context():
        settings = ext.mailer().settings
    assert settings.state == "redis://127.0.0.1:1/0"
    assert settings.state_password is not None
    assert settings.state_password.reveal() == STATE_PASSWORD
    assert STATE_PASSWORD not in repr(settings) + repr(app.extensions["postbud"])


def test_the_state_password_of_the_url_wins_then_config_then_environment(
    make_app: AppMaker, ext: Postbud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUD_STATE_PASSWORD", "from-the-environment")
    config = {
        "TESTING": True,
        "POSTBUD_USERNAME": "me@gmail.com",
        "POSTBUD_APP_PASSWORD": "abcdabcdabcdabcd",
        "POSTBUD_STATE": "redis://127.0.0.1:1/0",
    }
    seen = []
    for changes in (
        {},
        {"POSTBUD_STATE_PASSWORD": "from-the-config"},
        {"POSTBUD_STATE": "redis://:from-the-url@127.0.0.1:1/0"},
    ):
        config.update(changes)
        app = make_app(dict(config))
        with app.app_context():
            password = ext.mailer().settings.state_password
        assert password is not None
        seen.append(password.reveal())
    assert seen == ["from-the-environment", "from-the-config", "from-the-url"]


# -- the Flask-Mail keys, and what wins -------------------------------------------------


def test_flask_mail_keys_send_through_postbud(
    make_app: AppMaker, ext: Postbud, fake_gmail_starttls: FakeGmail
) -> None:
    app = make_app(
        flask_mail_config(
            fake_gmail_starttls, MAIL_DEFAULT_SENDER=("Shop", fake_gmail_starttls.username)
        )
    )
    with app.app_context():
        ext.send("you@example.com", "Hi", "x")
        settings = ext.mailer().settings
    assert (settings.host, settings.port, settings.security) == (
        "127.0.0.1",
        fake_gmail_starttls.port,
        "starttls",
    )
    [received] = fake_gmail_starttls.messages
    assert received["From"] == f"Shop <{fake_gmail_starttls.username}>"


def test_postbud_keys_win_over_flask_mail_keys(
    make_app: AppMaker, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    app = make_app(flask_mail_config(fake_gmail, MAIL_PORT=1, POSTBUD_PORT=fake_gmail.port))
    with app.app_context():
        ext.send("you@example.com", "Hi", "x")
    assert len(fake_gmail.messages) == 1


def test_credentials_come_from_one_place(make_app: AppMaker, fake_gmail: FakeGmail) -> None:
    # A POSTBUD_USERNAME is never combined with Flask-Mail's MAIL_PASSWORD.
    with pytest.raises(postbud.ConfigurationError, match="POSTBUD_APP_PASSWORD"):
        make_app(flask_mail_config(fake_gmail, POSTBUD_USERNAME="other@gmail.com"))


def test_a_security_key_drops_a_gmail_port_from_below(
    make_app: AppMaker, ext: Postbud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUD_PORT", "465")
    app = make_app(
        {
            "POSTBUD_USERNAME": "me@gmail.com",
            "POSTBUD_APP_PASSWORD": "abcd efgh ijkl mnop",
            "POSTBUD_SECURITY": "starttls",
        }
    )
    with app.app_context():
        settings = ext.mailer().settings
    assert (settings.port, settings.security) == (587, "starttls")


def test_the_environment_fills_what_the_config_leaves_out(
    make_app: AppMaker, ext: Postbud, fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_gmail.settings_values().items():
        monkeypatch.setenv(f"POSTBUD_{name.upper()}", str(value))
    monkeypatch.setenv("POSTBUD_SENDER", "")  # empty: unset
    app = make_app({"POSTBUD_SPOOL": ""})  # "": the outbox in memory
    with app.app_context():
        ext.send("you@example.com", "From the environment", "x")
        assert ext.mailer().settings.spool is None
    assert [m["Subject"] for m in fake_gmail.messages] == ["From the environment"]
