"""Settings: one vocabulary, four spellings, and an error that names the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import postbud
from postbud import ConfigurationError, Settings
from postbud._config import default_spool_path

PW = "abcd efgh ijkl mnop"


def test_defaults_live_in_settings() -> None:
    s = Settings(username="me@gmail.com", app_password=PW)
    assert (s.host, s.port, s.security, s.timeout) == ("smtp.gmail.com", 465, "ssl", 30.0)
    assert (s.daily_limit, s.queue_size, s.exit_timeout, s.max_age) == (500, 1000, 5.0, 259200.0)
    assert (s.alert_cooldown, s.alert_cap, s.alert_reserve, s.alert_max_share) == (
        600.0,
        10,
        0.1,
        0.5,
    )


def test_port_587_alone_means_starttls() -> None:
    s = Settings(username="me@gmail.com", app_password=PW, port=587)
    assert (s.security, s.port) == ("starttls", 587)
    s = Settings(username="me@gmail.com", app_password=PW, security="STARTTLS")
    assert (s.security, s.port) == ("starttls", 587)


def test_strings_are_converted() -> None:
    s = Settings(username="me@gmail.com", app_password=PW, port="2465", timeout="2.5")
    assert (s.port, s.timeout) == (2465, 2.5)


def test_from_env_reads_prefixed_variables() -> None:
    env = {
        "POSTBUD_USERNAME": "me@gmail.com",
        "POSTBUD_APP_PASSWORD": PW,
        "POSTBUD_PORT": "587",
        "POSTBUD_TIMEOUT": "",  # empty counts as unset
        "POSTBUD_SPOOL": "",  # empty means memory
        "HOME": "/home/me",
    }
    s = Settings.from_env(env)
    assert (s.username, s.port, s.security, s.timeout, s.spool) == (
        "me@gmail.com",
        587,
        "starttls",
        30.0,
        None,
    )


def test_from_mapping_is_case_insensitive_and_takes_a_prefix() -> None:
    s = Settings.from_mapping({"username": "me@gmail.com", "App_Password": PW, "TIMEOUT": 5})
    assert s.timeout == 5.0
    flask_config = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": PW, "DEBUG": True}
    assert Settings.from_mapping(flask_config, prefix="POSTBUD_").username == "me@gmail.com"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"app_password": PW}, "username is missing: set it to the Gmail or Workspace address"),
        ({"username": "me@gmail.com"}, "No credentials for me@gmail.com: set app_password"),
        (
            {"username": "me@gmail.com", "app_password": PW, "oauth_token_file": __file__},
            "Two kinds of credentials are set (app_password and oauth_token_file): keep exactly",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "security": "ssl", "port": 587},
            "port 587 is Gmail's 'starttls' port but security is 'ssl': use security='ssl' "
            "with port 465, or security='starttls' with port 587.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "security": "starttls", "port": 465},
            "port 465 is Gmail's 'ssl' port but security is 'starttls'",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "security": "tls"},
            "security must be 'ssl' (TLS from the first byte, Gmail port 465) or 'starttls' "
            "(port 587), got 'tls'.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "port": "smtp"},
            "port must be a whole number, got 'smtp'.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "port": 70000},
            "port must be between 1 and 65535, got 70000.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "ca_file": "/nonexistent/ca.pem"},
            "ca_file '/nonexistent/ca.pem' does not exist: point it at a PEM file of CA "
            "certificates",
        ),
        (
            {"username": "me", "app_password": PW},
            "username 'me' is not an email address",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "timeout": 0},
            "timeout must be >= 0.001, got 0.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "alert_max_share": 2},
            "alert_max_share must be between 0 and 1, got 2.",
        ),
        (
            {"username": "me@gmail.com", "oauth_client_id": "id.apps.googleusercontent.com"},
            "missing: oauth_client_secret, oauth_refresh_token.",
        ),
        (
            {"username": "me@gmail.com", "app_password": PW, "host": "smtp.gmail.com\r\nX: y"},
            "host contains a line break",
        ),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # ConfigurationError is also a ValueError


def test_errors_use_the_spelling_of_the_source() -> None:
    with pytest.raises(ConfigurationError, match=r"POSTBUD_PORT must be a whole number"):
        Settings.from_env(
            {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": PW, "POSTBUD_PORT": "five"}
        )
    with pytest.raises(ConfigurationError, match=r"No credentials .*set APP_PASSWORD"):
        Settings.from_mapping({"USERNAME": "me@gmail.com"})


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"Unknown postbud setting POSTBUD_APP_PASSWRD\. "
        r"Did you mean POSTBUD_APP_PASSWORD\?",
    ):
        Settings.from_env({"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWRD": PW})
    with pytest.raises(
        ConfigurationError,
        match=r"Unknown postbud setting usernme\. Did you "
        r"mean username\?",
    ):
        postbud.Mailer(usernme="me@gmail.com", app_password=PW)  # type: ignore[call-arg]


def test_spool_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_spool_path({"POSTBUD_SPOOL": ""}) is None
    assert default_spool_path({"POSTBUD_SPOOL": "/x/o.sqlite"}) == "/x/o.sqlite"
    assert default_spool_path({"XDG_CACHE_HOME": "/c"}) == "/c/postbud/outbox.sqlite"
    home = os.path.expanduser("~")
    assert default_spool_path({}) == os.path.join(home, ".cache", "postbud", "outbox.sqlite")
    # kwargs without spool= also follow POSTBUD_SPOOL (the plugin points it at tmp)
    monkeypatch.setenv("POSTBUD_SPOOL", str(tmp_path / "s.sqlite"))
    assert Settings(username="me@gmail.com", app_password=PW).spool == str(tmp_path / "s.sqlite")
    assert Settings(username="me@gmail.com", app_password=PW, spool=None).spool is None


def test_the_pytest_plugin_points_the_spool_at_a_temporary_file(postbud_spool: Path) -> None:
    assert os.environ["POSTBUD_SPOOL"] == str(postbud_spool)
    assert "postbud-spool" in str(postbud_spool)


def test_replace_validates_again() -> None:
    s = Settings(username="me@gmail.com", app_password=PW)
    assert s.replace(port=587).security == "starttls"
    with pytest.raises(ConfigurationError):
        s.replace(port=587, security="ssl")


def test_sender_keeps_its_display_name() -> None:
    s = Settings(username="me@gmail.com", app_password=PW, sender="Alerts <me@gmail.com>")
    assert s.sender == "Alerts <me@gmail.com>"


def test_from_env_takes_the_spool_default_from_the_mapping_given() -> None:
    env = {
        "POSTBUD_USERNAME": "me@gmail.com",
        "POSTBUD_APP_PASSWORD": PW,
        "XDG_CACHE_HOME": "/srv/cache",
    }
    assert Settings.from_env(env).spool == "/srv/cache/postbud/outbox.sqlite"


def test_app_password_format_is_checked_with_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        Settings(username="me@gmail.com", app_password="pässwörd")


def test_infinite_numbers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"timeout must be >= 0\.001, got 'inf'"):
        Settings(username="me@gmail.com", app_password=PW, timeout="inf")


def test_a_host_name_that_is_not_one_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'smtp\.\.gmail\.com' is not a valid host"):
        Settings(username="me@gmail.com", app_password="abcdefghijklmnop", host="smtp..gmail.com")
