"""Settings: one vocabulary, four spellings, and an error that names the fix."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import postbud
from postbud import ConfigurationError, Settings
from postbud._config import app_password_looks_wrong, default_spool_path
from postbud.testing import FakeGmail

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
            "port 587 is Gmail's 'starttls' port but security is 'ssl': Gmail takes 'ssl' on "
            "port 465 and 'starttls' on port 587; change one of the two.",
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


# -- app passwords as users paste them (issue 17) -----------------------------------------

QUOTES_WARNING = (
    "{name} was given in quotes; postbud removed them. Docker's --env-file keeps "
    "quotes: write the 16 letters without quotes or spaces."
)


@pytest.mark.parametrize(
    "given",
    [
        "abcdefghijklmnop",
        "abcd efgh ijkl mnop",
        "abcd\u00a0efgh\u00a0ijkl\u00a0mnop",  # non-breaking spaces, copied from a browser
        " abcd\tefgh\u200bijkl mnop\n",  # a tab, a zero-width space, around it whitespace
        postbud.Secret("abcd efgh ijkl mnop"),
    ],
)
def test_app_password_spaces_are_removed_for_every_source(
    given: str | postbud.Secret, caplog: pytest.LogCaptureFixture
) -> None:
    kwargs = Settings(username="me@gmail.com", app_password=given, spool=None)
    assert kwargs.app_password is not None
    assert kwargs.app_password.reveal() == "abcdefghijklmnop"
    if isinstance(given, str):
        env = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": given}
        assert Settings.from_env(env, spool=None) == kwargs
    assert kwargs.app_password_looks_wrong() is None
    assert caplog.records == []  # spaces alone are no reason to warn


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_app_password_from_the_environment_warns_once_and_names_the_variable(
    quote: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = f"{quote}abcd efgh ijkl mnop{quote}"
    env = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": value}
    with caplog.at_level(logging.WARNING, logger="postbud"):
        settings = Settings.from_env(env, spool=None)
        settings.replace(timeout=5)  # the value kept is unquoted: no second warning
    assert settings.app_password is not None
    assert settings.app_password.reveal() == "abcdefghijklmnop"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("postbud", logging.WARNING, QUOTES_WARNING.format(name="POSTBUD_APP_PASSWORD"))
    ]
    assert "abcd" not in caplog.text


def test_quoted_app_password_as_an_argument_names_the_argument(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="postbud"):
        settings = Settings(username="me@gmail.com", app_password='"abcdefghijklmnop"')
    assert settings.app_password == postbud.Secret("abcdefghijklmnop")
    assert [r.getMessage() for r in caplog.records] == [QUOTES_WARNING.format(name="app_password")]


def test_only_one_pair_of_matching_quotes_is_removed(caplog: pytest.LogCaptureFixture) -> None:
    def kept(value: str) -> str:
        secret = Settings(username="me@gmail.com", app_password=value).app_password
        assert secret is not None
        return secret.reveal()

    assert kept("\"'abcdefghijklmnop'\"") == "'abcdefghijklmnop'"
    assert kept("'abcdefghijklmnop\"") == "'abcdefghijklmnop\""  # not a pair
    assert kept("abc'defghijklmnop'") == "abc'defghijklmnop'"  # not around it
    assert len(caplog.records) == 1
    with pytest.raises(ConfigurationError, match=r"^No credentials for me@gmail\.com"):
        Settings(username="me@gmail.com", app_password='""')  # quotes around nothing


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("abcd efgh ijkl mnop", None),
        ("'ABCD EFGH IJKL MNOP'", None),
        (
            "hunter2!x",
            "an app password is 16 letters; this value has 9 characters — "
            "is it your account password?",
        ),
        (
            "x",
            "an app password is 16 letters; this value has 1 character — "
            "is it your account password?",
        ),
        (
            "abcd efgh ijkl mn0p",
            "an app password is 16 letters; this value has 1 character that is not a letter — "
            "is it your account password?",
        ),
        (
            "CorrectHorse-Battery9"[:16],
            "an app password is 16 letters; this value has 1 character that is not a letter — "
            "is it your account password?",
        ),
        (
            "abcd-efgh-1234-mnop",
            "an app password is 16 letters; this value has 19 characters — "
            "is it your account password?",
        ),
    ],
)
def test_app_password_looks_wrong_says_why_without_refusing(
    value: str, sentence: str | None
) -> None:
    settings = Settings(username="me@gmail.com", app_password=value)  # accepted
    assert settings.app_password_looks_wrong() == sentence
    assert app_password_looks_wrong(value) == sentence
    assert value not in (sentence or "")
    assert app_password_looks_wrong(None) is None


def test_the_hashed_and_masked_value_is_the_normalised_one() -> None:
    from postbud._outbox import credential_hash

    spaced = Settings(username="me@gmail.com", app_password="abcd\u00a0efgh ijkl mnop")
    quoted = Settings(username="me@gmail.com", app_password='"abcdefghijklmnop"')
    plain = Settings(username="me@gmail.com", app_password="abcdefghijklmnop")
    hashes = {credential_hash(s.username, s.credentials()) for s in (spaced, quoted, plain)}
    assert len(hashes) == 1 and None not in hashes
    other = Settings(username="me@gmail.com", app_password="abcdefghijklmnoq")
    assert credential_hash(other.username, other.credentials()) not in hashes
    with postbud.Mailer(spaced, spool=None) as mailer:
        masked = mailer.mask(
            "pw=x abcd efgh ijkl mnop / abcd\u00a0efgh\u00a0ijkl\u00a0mnop / abcdefghijklmnop"
        )
    assert masked == "pw=x ******** / ******** / ********"


def test_a_spaced_and_a_quoted_app_password_log_in_to_gmail(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture
) -> None:
    assert fake_gmail.app_password == "abcd efgh ijkl mnop"
    for given in ("abcd\u00a0efgh\u00a0ijkl\u00a0mnop", "'abcd efgh ijkl mnop'"):
        with fake_gmail.mailer(app_password=given) as mailer:
            mailer.send("you@example.com", "Hi", "Hello")
    assert fake_gmail.logins == [fake_gmail.username] * 2
    assert fake_gmail.failed_logins == []
    assert len(fake_gmail.messages) == 2
    assert [r.getMessage() for r in caplog.records if r.name == "postbud"] == [
        QUOTES_WARNING.format(name="app_password")
    ]


def test_a_quoted_app_password_from_the_environment_logs_in(fake_gmail: FakeGmail) -> None:
    env = {
        "POSTBUD_USERNAME": fake_gmail.username,
        "POSTBUD_APP_PASSWORD": '"abcd efgh ijkl mnop"',
        "POSTBUD_HOST": "127.0.0.1",
        "POSTBUD_PORT": str(fake_gmail.port),
        "POSTBUD_CA_FILE": fake_gmail.ca_file,
        "POSTBUD_SPOOL": "",
    }
    with postbud.Mailer(Settings.from_env(env)) as mailer:
        mailer.send("you@example.com", "Hi", "Hello")
    assert fake_gmail.logins == [fake_gmail.username] and len(fake_gmail.messages) == 1


# -- port and security: one rule everywhere (issue 17) ------------------------------------


def test_replace_security_keeps_an_explicit_port_and_moves_gmail_ports() -> None:
    base = Settings(username="me@gmail.com", app_password=PW, port=2465, spool=None)
    assert base.security == "ssl"
    starttls = base.replace(security="starttls")
    assert (starttls.security, starttls.port) == ("starttls", 2465)
    assert (starttls.replace(security="ssl").security, starttls.port) == ("ssl", 2465)
    gmail = Settings(username="me@gmail.com", app_password=PW, spool=None)
    assert (gmail.replace(security="starttls").port, gmail.replace(security="ssl").port) == (
        587,
        465,
    )
    assert gmail.replace(security="starttls").replace(security="ssl").port == 465


def test_replace_port_sets_the_mode_only_for_gmail_ports() -> None:
    relay = Settings(
        username="me@gmail.com", app_password=PW, port=2587, security="starttls", spool=None
    )
    assert (relay.replace(port=3587).security, relay.replace(port=3587).port) == (
        "starttls",
        3587,
    )
    assert relay.replace(port=465).security == "ssl"
    assert relay.replace(port=587).security == "starttls"
    assert relay.replace(port=None).port == 587  # the mode's own port
    with pytest.raises(ConfigurationError, match=r"^port 587 is Gmail's 'starttls' port"):
        relay.replace(port=587, security="ssl")


def test_mailer_overrides_follow_the_same_rule() -> None:
    base = Settings(username="me@gmail.com", app_password=PW, port=2465, spool=None)
    with postbud.Mailer(base, security="starttls") as mailer:
        assert (mailer.settings.security, mailer.settings.port) == ("starttls", 2465)
    with postbud.Mailer(base.replace(port=465), security="starttls") as mailer:
        assert (mailer.settings.security, mailer.settings.port) == ("starttls", 587)


def test_from_env_overrides_follow_the_same_rule() -> None:
    env = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": PW, "POSTBUD_SPOOL": ""}
    kept = Settings.from_env({**env, "POSTBUD_PORT": "2465"}, security="starttls")
    assert (kept.security, kept.port) == ("starttls", 2465)
    moved = Settings.from_env({**env, "POSTBUD_PORT": "465"}, security="starttls")
    assert (moved.security, moved.port) == ("starttls", 587)
    mode = Settings.from_env({**env, "POSTBUD_SECURITY": "starttls"}, port=2587)
    assert (mode.security, mode.port) == ("starttls", 2587)
    gmail = Settings.from_env({**env, "POSTBUD_SECURITY": "starttls"}, port=465)
    assert (gmail.security, gmail.port) == ("ssl", 465)
    both = {**env, "POSTBUD_PORT": "587", "POSTBUD_SECURITY": "ssl"}
    with pytest.raises(
        ConfigurationError,
        match=r"^POSTBUD_PORT 587 is Gmail's 'starttls' port but POSTBUD_SECURITY is 'ssl'",
    ):
        Settings.from_env(both)  # given together, at one level: still a contradiction


# -- from_layers: a framework's several places, highest first ---------------------------


def config_key(name: str) -> str:  # how each layer spells a setting, for errors
    return f"POSTBUD_{name.upper()}"


def mail_key(name: str) -> str:
    return "MAIL_" + {"host": "SERVER", "app_password": "PASSWORD"}.get(name, name.upper())


def env_key(name: str) -> str:
    return f"${{POSTBUD_{name.upper()}}}"


def test_from_layers_highest_wins_and_none_is_not_given() -> None:
    s = Settings.from_layers(
        [
            ({"username": None, "timeout": 7, "spool": ""}, config_key),
            (
                {"username": "me@gmail.com", "app_password": "abcdabcdabcdabcd", "timeout": 30},
                mail_key,
            ),
            ({"daily_limit": "50", "timeout": "99"}, env_key),
        ]
    )
    assert (s.username, s.timeout, s.daily_limit, s.spool) == ("me@gmail.com", 7.0, 50, None)


def test_from_layers_takes_the_credentials_as_one_group(tmp_path: Path) -> None:
    token = tmp_path / "token.json"
    token.write_text("{}")
    s = Settings.from_layers(
        [
            ({"oauth_token_file": str(token), "username": "new@gmail.com"}, config_key),
            ({"username": "old@gmail.com", "app_password": "abcdabcdabcdabcd"}, mail_key),
            ({"username": "env@gmail.com"}, env_key),
        ],
        unnamed=config_key,
    )
    # The token file's layer gives every credential: not the MAIL_* password (nor its
    # user name) below it.
    assert (s.username, s.app_password, s.oauth_token_file) == ("new@gmail.com", None, str(token))
    with pytest.raises(ConfigurationError) as missing:
        Settings.from_layers(
            [
                ({"sender": "me@gmail.com"}, config_key),
                ({"app_password": "abcdabcdabcdabcd"}, mail_key),
            ],
            unnamed=config_key,
        )
    assert "MAIL_USERNAME" in str(missing.value)  # the group's layer lacks the user name


def test_from_layers_port_and_security_follow_each_other() -> None:
    account = {"username": "me@gmail.com", "app_password": "abcdabcdabcdabcd"}
    below_587 = Settings.from_layers(
        [({"security": "ssl"}, config_key), ({**account, "port": 587}, mail_key)]
    )
    assert (below_587.security, below_587.port) == ("ssl", 465)
    below_tls = Settings.from_layers(
        [({"port": 465}, config_key), ({**account, "security": "starttls"}, mail_key)]
    )
    assert (below_tls.security, below_tls.port) == ("ssl", 465)
    relay = Settings.from_layers(
        [({"security": "ssl"}, config_key), ({**account, "port": 2465}, mail_key)]
    )
    assert (relay.security, relay.port) == ("ssl", 2465)  # not a Gmail port: kept


def test_from_layers_errors_name_the_key_as_its_layer_spells_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = {"username": "me@gmail.com", "app_password": "abcdabcdabcdabcd"}
    with pytest.raises(ConfigurationError) as typo:
        Settings.from_layers([({"timout": 3}, config_key), (account, mail_key)])
    assert (
        str(typo.value) == "Unknown postbud setting POSTBUD_TIMOUT. Did you mean POSTBUD_TIMEOUT?"
    )
    with pytest.raises(ConfigurationError) as bad:
        Settings.from_layers([({"timeout": 3}, config_key), ({**account, "port": "x"}, mail_key)])
    assert str(bad.value).startswith("MAIL_PORT ")
    with caplog.at_level(logging.WARNING, logger="postbud"):
        quoted = Settings.from_layers(
            [({}, config_key), ({**account, "app_password": '"abcd efgh ijkl mnop"'}, mail_key)]
        )
    assert quoted.app_password is not None and quoted.app_password.reveal() == "abcdefghijklmnop"
    assert caplog.messages[0].startswith("MAIL_PASSWORD was given in quotes")


# -- state: where the shared state lives (issue 21) -------------------------------------


def test_state_defaults_to_the_spool() -> None:
    s = Settings(username="me@gmail.com", app_password=PW)
    assert (s.state, s.state_password) == (None, None)
    assert Settings(username="me@gmail.com", app_password=PW, state="").state is None


def test_a_redis_state_url_is_normalised_and_its_password_kept_apart() -> None:
    s = Settings(
        username="me@gmail.com",
        app_password=PW,
        spool=None,  # shared state on Redis, the queue in memory: allowed
        state="redis://:p%40ss-w0rd@redis.internal/3",
        state_password="from-the-environment",
    )
    assert s.state == "redis://redis.internal:6379/3"
    assert s.state_password == postbud.Secret("p@ss-w0rd")  # the URL's wins
    assert "p@ss-w0rd" not in repr(s) and "p%40ss" not in repr(s)
    assert s.replace(timeout=5).state_password == s.state_password
    tls = Settings(username="me@gmail.com", app_password=PW, state="rediss://user:pw@[::1]:6380")
    assert (tls.state, tls.state_password) == ("rediss://user@[::1]:6380/0", postbud.Secret("pw"))


def test_the_state_password_comes_from_the_environment() -> None:
    env = {
        "POSTBUD_USERNAME": "me@gmail.com",
        "POSTBUD_APP_PASSWORD": PW,
        "POSTBUD_STATE": "redis://10.0.0.5:6379/0",
        "POSTBUD_STATE_PASSWORD": "hunter2-redis",
        "POSTBUD_SPOOL": "",
    }
    s = Settings.from_env(env)
    assert (s.state, s.state_password) == (
        "redis://10.0.0.5:6379/0",
        postbud.Secret("hunter2-redis"),
    )
    assert "hunter2-redis" not in repr(s)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://redis:6379", "POSTBUD_STATE must be a redis:// or rediss:// URL"),
        ("redis://:hunter2@redis:port/0", "POSTBUD_STATE 'redis://:********@redis:port/0' is not"),
        ("redis://:hunter2@redis:0/0", "the port must be a number from 1 to 65535"),
        ("redis://:hunter2@:6379/0", "POSTBUD_STATE 'redis://:********@:6379/0' names no host"),
        ("redis://:hunter2@redis/zero", "the path must be a database number such as /0"),
        ("rediss://:hunter2@redis/0?ssl_cert_reqs=none", "has a query string or fragment"),
    ],
)
def test_bad_state_urls_name_the_key_and_mask_the_password(value: str, message: str) -> None:
    env = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": PW, "POSTBUD_STATE": value}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("password", ["p@ss@word", "pass word", "p:ss"])
def test_no_part_of_a_state_password_shows_in_an_error(password: str) -> None:
    # urlsplit takes the last "@" as the end of the password: so must the mask.
    env = {
        "POSTBUD_USERNAME": "me@gmail.com",
        "POSTBUD_APP_PASSWORD": PW,
        "POSTBUD_STATE": f"redis://:{password}@redis:99999/0",
    }
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert "redis://:********@redis:99999/0" in str(info.value)
    assert not any(part in str(info.value) for part in ("ss@w", "word", "p:ss"))
