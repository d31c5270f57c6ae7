"""`postbud check` with the shared state on Redis (issue 21): a "state" step that says
whether the store answers, how fast, and what it holds for the account; a store that
does not answer (down, hung, a wrong or missing password) fails that step, never hides
the SMTP steps, and makes the exit status 1. Nothing prints a password.

Against a real redis-server (tests/core/redistools.py) and FakeGmail, over real sockets;
the command line runs in a fresh interpreter, as a shell runs it. Each `postbud check`
gets a spool of its own, as a second machine has: what it reports of the account comes
from Redis.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from clitools import clean_env, postbud, python_file
from redistools import RedisServer, redis_server

import postbud as postbud_lib
from postbud import Mailer
from postbud._check import diagnose
from postbud.testing import FakeGmail, replies

__all__ = ["redis_server"]  # the fixture, imported for the tests below

WRONG = "not-the-redis-password"
STEP = re.compile(r"^(?P<status>ok|warn|FAIL) +(?P<step>\w+) +(?P<text>.*)$")


def check_env(
    fake: FakeGmail, server: RedisServer, folder: Path, **overrides: Any
) -> dict[str, str]:
    """``postbud check``'s environment: the fake's account, the store, a spool of its own
    (another machine's); an override of None removes the variable."""
    values = fake.settings_values(spool=str(folder / "machine-b.sqlite"), timeout=5)
    values.update(state=server.url, state_password=server.password)
    values.update(overrides)
    variables = {f"POSTBUD_{k.upper()}": str(v) for k, v in values.items() if v is not None}
    env = clean_env(folder, **variables)
    for name, value in overrides.items():
        if value is None:
            env.pop(f"POSTBUD_{name.upper()}", None)
    return env


def steps(out: str) -> list[tuple[str, str, str]]:
    """(status, step, text) of each step line of `postbud check`'s output."""
    return [(m["status"], m["step"], m["text"]) for m in map(STEP.match, out.splitlines()) if m]


def step(out: str, name: str) -> tuple[str, str, str]:
    """(status, text, fix) of the step ``name``."""
    lines = out.splitlines()
    [at] = [i for i, line in enumerate(lines) if (m := STEP.match(line)) and m["step"] == name]
    found = STEP.match(lines[at])
    assert found is not None
    after = lines[at + 1].strip() if at + 1 < len(lines) else ""
    fix = after.removeprefix("fix: ") if after.startswith("fix: ") else ""
    return found["status"], found["text"], fix


def machine_a(fake: FakeGmail, server: RedisServer, folder: Path, **overrides: Any) -> Mailer:
    """A Mailer of "machine A": its own spool, the same store."""
    values: dict[str, Any] = {
        "spool": str(folder / "machine-a.sqlite"),
        "state": server.url,
        "state_password": server.password,
        **overrides,
    }
    return Mailer(fake.settings(**values))


def no_secret_in(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


# -- a store that answers -------------------------------------------------------------------


def test_the_state_step_says_the_store_answers_and_what_the_fleet_sent(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    with machine_a(fake_gmail, redis_server, tmp_path) as mailer:
        mailer.send(["a@example.com", "b@example.com"], "One", "x")
        mailer.send("c@example.com", "Two", "x")
    live = f"postbud:{{{fake_gmail.username}}}:live"
    senders = redis_server.client().zrange(live, 0, -1)
    result = postbud(check_env(fake_gmail, redis_server, tmp_path), "check")
    # A check reads: it is no sender, so the fleet's shares of an outage stay as they are.
    assert redis_server.client().zrange(live, 0, -1) == senders
    assert result.returncode == 0, result.stdout + result.stderr
    names = [name for _, name, _ in steps(result.stdout)]
    assert names == ["settings", "state", "dns", "tcp", "tls", "ehlo", "login", "quota"]
    status, text, fix = step(result.stdout, "state")
    assert status == "ok"
    assert re.fullmatch(
        rf"{re.escape(redis_server.url)} answers in \d+\.\d ms; 3 recipient\(s\) counted for "
        rf"{re.escape(fake_gmail.username)} in the last 24 h, by every machine that shares it",
        text,
    ), text
    assert fix == ""
    # The quota comes from the store too: machine B's own spool has sent nothing.
    assert step(result.stdout, "quota")[1] == (
        f"3 of 500 recipients used in the last 24 h (shared state {redis_server.url})"
    )
    assert result.stdout.endswith("All checks passed.\n")
    assert result.stderr == ""
    no_secret_in(result, redis_server.password)
    assert [m["Subject"] for m in fake_gmail.messages] == ["One", "Two"]  # check sent none


def test_the_state_option_overrides_the_variable(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = check_env(fake_gmail, redis_server, tmp_path, state="redis://127.0.0.1:1/0")
    result = postbud(env, "check", "--state", redis_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert step(result.stdout, "state")[1].startswith(f"{redis_server.url} answers in ")


def test_the_password_in_the_url_wins_over_the_variable(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url.replace("redis://", f"redis://:{redis_server.password}@")
    env = check_env(fake_gmail, redis_server, tmp_path, state=url, state_password=WRONG)
    result = postbud(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert step(result.stdout, "state")[0] == "ok"
    assert step(result.stdout, "state")[1].startswith(f"{redis_server.url} answers")  # no password
    no_secret_in(result, redis_server.password, WRONG)


def test_a_login_pause_of_another_machine_is_in_the_store_and_stops_this_one(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    wrong = "wxyzwxyzwxyzwxyz"
    first = postbud(
        check_env(fake_gmail, redis_server, tmp_path / "a", app_password=wrong), "check"
    )
    assert first.returncode == 1
    assert step(first.stdout, "login")[0] == "FAIL"  # refused: the account's logins pause
    (tmp_path / "b").mkdir()
    logins = len(fake_gmail.logins)
    again = postbud(
        check_env(fake_gmail, redis_server, tmp_path / "b", app_password=wrong), "check"
    )
    assert again.returncode == 1
    status, text, _ = step(again.stdout, "state")
    assert status == "warn"  # the store answers, and holds something to look at
    held = r"; it holds a login pause since \S+ \S+ \(Gmail refused the login for \S+: 535 5\.7\.8 "
    assert re.search(held, text), text
    assert step(again.stdout, "login")[1].startswith("not tried: logins for ")
    assert len(fake_gmail.logins) == logins  # the other machine's pause was respected
    # The right password is not stopped by a pause of the wrong one.
    right = postbud(check_env(fake_gmail, redis_server, tmp_path / "b"), "check")
    assert right.returncode == 0, right.stdout
    assert step(right.stdout, "state")[0] == "ok"
    for result in (first, again, right):
        no_secret_in(result, wrong, redis_server.password, fake_gmail.app_password)


def test_the_daily_limit_hold_of_another_machine_is_in_the_store(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    with machine_a(fake_gmail, redis_server, tmp_path) as mailer:
        fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED)
        with pytest.raises(postbud_lib.QuotaExceededError):
            mailer.send("a@example.com", "Over", "x")
    result = postbud(check_env(fake_gmail, redis_server, tmp_path), "check")
    assert result.returncode == 1, result.stdout
    status, text, _ = step(result.stdout, "state")
    assert status == "warn"
    assert re.search(r"; it holds the daily-limit hold until \S+ \S+$", text), text
    status, text, _ = step(result.stdout, "quota")
    assert status == "FAIL"
    assert "held for " in text


# -- a store that does not answer ---------------------------------------------------------


def test_a_store_that_is_down_fails_its_step_and_the_smtp_steps_go_on(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.stop()
    result = postbud(check_env(fake_gmail, redis_server, tmp_path), "check")
    assert result.returncode == 1
    found = steps(result.stdout)
    assert [(s, n) for s, n, _ in found] == [
        ("ok", "settings"),
        ("FAIL", "state"),
        ("ok", "dns"),
        ("ok", "tcp"),
        ("ok", "tls"),
        ("ok", "ehlo"),
        ("ok", "login"),
        ("warn", "quota"),
    ]
    _, text, fix = step(result.stdout, "state")
    assert text.startswith(f"{redis_server.url} does not answer (ConnectionError: ")
    assert "Connection refused" in text
    assert fix.startswith("Check that Redis runs there and that this machine reaches it")
    assert "mail waits in the spool" in fix
    assert step(result.stdout, "quota")[1] == (
        "not counted: the shared state does not answer (see the state step)"
    )
    assert "All checks passed." not in result.stdout
    assert "Traceback" not in result.stderr
    no_secret_in(result, redis_server.password)


def test_no_test_message_goes_out_while_the_store_does_not_answer(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.stop()
    env = check_env(fake_gmail, redis_server, tmp_path)
    result = postbud(env, "check", "--send", "you@example.com")
    assert result.returncode == 1
    status, text, fix = step(result.stdout, "send")
    assert status == "FAIL"
    # Not "the daily limit is spent": this process has no share of it without Redis.
    assert text == (
        "not sent to you@example.com: without the shared state this process has no share "
        "of the daily limit (see the state step)"
    )
    assert fix == "Make the state step pass, then run the check with --send again."
    assert fake_gmail.messages == []
    redis_server.start()  # back, on the same port
    again = postbud(env, "check", "--send", "you@example.com")
    assert again.returncode == 0, again.stdout
    assert [m.recipients for m in fake_gmail.messages] == [("you@example.com",)]
    assert [k for k in redis_server.client().keys("postbud:*") if k.endswith(":ledger")]


def test_a_hung_store_fails_within_its_short_deadline(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.pause()  # accepts connections, answers nothing
    started = time.monotonic()
    result = postbud(check_env(fake_gmail, redis_server, tmp_path), "check")
    took = time.monotonic() - started
    assert result.returncode == 1
    status, text, _ = step(result.stdout, "state")
    assert status == "FAIL"
    assert text.startswith(f"{redis_server.url} does not answer (TimeoutError: ")
    assert step(result.stdout, "login")[0] == "ok"  # the SMTP steps did not wait on it
    assert took < 8, f"check took {took:.1f} s"


@pytest.mark.parametrize("where", ["variable", "url"])
def test_a_wrong_password_is_said_and_never_printed(
    where: str, fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    if where == "url":
        url = redis_server.url.replace("redis://", f"redis://:{WRONG}@")
        env = check_env(fake_gmail, redis_server, tmp_path, state=url, state_password=None)
    else:
        env = check_env(fake_gmail, redis_server, tmp_path, state_password=WRONG)
    result = postbud(env, "check", "--debug")  # not even the traceback shows it
    assert result.returncode == 1
    status, text, fix = step(result.stdout, "state")
    assert status == "FAIL"
    assert text.startswith(f"{redis_server.url} refused the password (AuthenticationError: ")
    assert fix.startswith("Check the password: the one in the state URL, else ")
    assert step(result.stdout, "login")[0] == "ok"
    no_secret_in(result, WRONG, redis_server.password)


def test_a_missing_password_says_which_variable_to_set(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    result = postbud(check_env(fake_gmail, redis_server, tmp_path, state_password=None), "check")
    assert result.returncode == 1
    status, text, fix = step(result.stdout, "state")
    assert status == "FAIL"
    assert text.startswith(f"{redis_server.url} wants a password, and none is set (")
    assert fix.startswith("Set POSTBUD_STATE_PASSWORD to the Redis password")


def test_without_redis_py_the_state_step_says_what_to_install(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import sys
        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "redis":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Missing())
        from postbud.cli import main
        sys.exit(main(["check"]))
        """
    )
    values = fake_gmail.settings_values(spool=str(tmp_path / "outbox.sqlite"), timeout=5)
    env = clean_env(
        tmp_path,
        **{f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()},
        POSTBUD_STATE="redis://127.0.0.1:1/0",
    )
    result = python_file(env, tmp_path / "no_redis.py", code)
    assert result.returncode == 2, result.stdout + result.stderr
    assert [(s, n) for s, n, _ in steps(result.stdout)] == [("ok", "settings"), ("FAIL", "state")]
    assert "pip install 'postbud[redis]'" in step(result.stdout, "state")[1]
    assert fake_gmail.connections == 0


# -- diagnose(), for the adapters' commands ---------------------------------------------------


def test_the_report_names_the_failed_state_step_after_the_steps_that_passed(
    fake_gmail: FakeGmail, redis_server: RedisServer
) -> None:
    settings = fake_gmail.settings(
        spool=None, timeout=5, state=redis_server.url, state_password=WRONG
    )
    report = diagnose(settings)
    assert report.exit_code == 1
    assert not report.ok
    assert report.steps[-1].name == "quota" and report.steps[-1].ok
    failure = report.failure
    assert failure is not None and failure.name == "state" and not failure.ok
    assert WRONG not in f"{failure.text} {failure.fix}"
    assert all(WRONG not in repr(s) for s in report.steps)
    good = diagnose(fake_gmail.settings(spool=None, timeout=5))  # no store to reach
    assert good.ok and good.failure is None
    assert "state" not in [s.name for s in good.steps]


def test_an_smtp_failure_after_a_failed_store_decides_the_report(
    fake_gmail: FakeGmail, redis_server: RedisServer
) -> None:
    redis_server.stop()
    settings = fake_gmail.settings(
        spool=None, timeout=5, state=redis_server.url, app_password="wxyzwxyzwxyzwxyz"
    )
    report = diagnose(settings)
    assert [s.name for s in report.steps if not s.ok] == ["state", "login"]
    failure = report.failure
    assert failure is not None and failure.name == "login"
    assert report.exit_code == 1
