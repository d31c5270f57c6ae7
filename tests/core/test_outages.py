"""The outbox under a wrong password, an outage and a bad certificate (issue 16, 1-2).

Nothing queued is lost to any of them, no process loops, and every process on the
spool respects the same login pause and connection backoff. Timings are scaled (a
backoff of tens of milliseconds, outages of a second or two); the 60 s / 10,000-row
figures are benchmarks/bench_scale.py's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from spooltools import rows, wait_for

from postbud import Mailer
from postbud._message import build_message
from postbud._outbox import Outbox, Priority, RetryPolicy
from postbud.testing import FakeGmail

TO = "you@example.com"
WRONG = "wrongwrongwrongw"
FAST = RetryPolicy(base_delay=0.01)
OUTAGE = RetryPolicy(base_delay=0.01, connect_base=0.05, connect_max=0.4, poll=0.05)


def states(spool: Path) -> list[str]:
    return [str(r["state"]) for r in rows(spool)]


def postbud(
    fake: FakeGmail, spool: Path, *args: str, **settings: Any
) -> subprocess.CompletedProcess[str]:
    """``postbud ARGS`` in another process, configured from the environment as cron does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    values = fake.settings_values(timeout=5, exit_timeout=3, spool=str(spool), **settings)
    env.update({f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})
    return subprocess.run(
        [sys.executable, "-m", "postbud", *args],
        input="body\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def logins(fake: FakeGmail) -> int:
    return sum(command.startswith("AUTH") for command in fake.commands)


# -- 1. a wrong password never costs mail ------------------------------------------------


def test_a_refused_login_costs_no_mail_and_pauses_every_process(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = tmp_path / "outbox.sqlite"
    with Mailer(fake_gmail.settings(app_password=WRONG, spool=str(spool)), policy=FAST) as m:
        for n in range(3):
            m.submit(TO, f"reset link {n}", "x")
        assert m.flush(5)  # settled: the rows wait for new credentials
        assert m.stats()["dead"] == 0
    assert states(spool) == ["queued"] * 3
    assert fake_gmail.failed_logins == [fake_gmail.username]

    # The next cron run, same wrong password: no login at all, its own message is kept,
    # exit 1 (the user must act), and the summary counts nothing as sent.
    result = postbud(
        fake_gmail, spool, "send", "--to", TO, "--subject", "nightly", app_password=WRONG
    )
    assert result.returncode == 1, result.stderr
    assert "0 of 3 message(s) left in the spool by an earlier run went out" in result.stderr
    assert "3 still wait (logins for postbud.test@gmail.com are paused since" in result.stderr
    assert "did not log in" in result.stderr and "kept in the spool" in result.stderr
    assert fake_gmail.failed_logins == [fake_gmail.username]  # still the one login
    assert "went out." not in result.stderr

    # postbud check: says so without logging in, and leaves the queue as it was.
    before = rows(spool)
    result = postbud(fake_gmail, spool, "check", app_password=WRONG)
    assert result.returncode == 1
    assert "FAIL login" in result.stdout
    assert "not tried: logins for postbud.test@gmail.com are paused" in result.stdout
    assert "postbud outbox retry" in result.stdout
    assert rows(spool) == before
    assert logins(fake_gmail) == 1

    # The password is fixed: new credentials log in at once; nothing was lost.
    with Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m:
        assert m.flush(10)
    assert sorted(str(r["Subject"]) for r in fake_gmail.messages) == [
        "nightly",
        "reset link 0",
        "reset link 1",
        "reset link 2",
    ]
    assert rows(spool) == []


def test_postbud_outbox_retry_ends_the_pause_for_the_same_credentials(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    # Gmail refused once (a 534 "log in via your browser"); the user unlocked the
    # account in a browser and keeps the same password.
    spool = tmp_path / "outbox.sqlite"
    fake_gmail.fail_next("AUTH", "534 5.7.9 Please log in with your web browser")
    with Mailer(fake_gmail.settings(spool=str(spool)), policy=FAST) as m:
        m.submit(TO, "waits", "x")
        assert m.flush(5)
    assert states(spool) == ["queued"]
    result = postbud(fake_gmail, spool, "outbox", "retry")
    assert result.returncode == 0, result.stderr
    assert "1 of 1 message(s) left in the spool by an earlier run went out." in result.stderr
    assert [m["Subject"] for m in fake_gmail.messages] == ["waits"]


def test_max_age_ends_rows_behind_a_login_pause_with_the_reason(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    policy = RetryPolicy(base_delay=0.01, poll=0.02)
    with Mailer(fake_gmail.settings(app_password=WRONG, max_age=1), policy=policy) as m:
        m.submit(TO, "a", "x")
        m.submit(TO, "b", "x")
        wait_for(lambda: states(postbud_spool) == ["dead", "dead"])
        assert m.stats()["dead"] == 2
    for row in rows(postbud_spool):
        assert str(row["last_error"]).startswith(
            "gave up after max_age (1 s); logins for postbud.test@gmail.com are paused since"
        )
    assert fake_gmail.failed_logins == [fake_gmail.username]


def test_a_throttled_login_waits_its_time_for_every_process(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    from postbud.testing import replies

    fake_gmail.fail_next("AUTH", replies.TOO_MANY_LOGINS)
    with Mailer(fake_gmail.settings(), policy=FAST) as first:
        first.submit(TO, "later", "x")
        assert first.flush(2)  # settled: its retry is minutes away
        with Mailer(fake_gmail.settings(), policy=FAST) as second:  # another process
            second.submit(TO, "also later", "x")
            assert second.flush(2)
            waits = second.outbox.waits()
            assert waits is not None and waits[0] == "login" and not waits[1].needs_user
    assert logins(fake_gmail) == 1
    # A blocking send still makes its one attempt (Gmail has the last word).
    with Mailer(fake_gmail.settings(), policy=FAST) as m:
        assert m.send(TO, "now", "x").accepted == (TO,)


# -- 2. an outage is not a hot loop ------------------------------------------------------


def test_an_outage_costs_a_few_connections_for_every_row_and_process(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    fake_gmail.disconnect_next("CONNECT", times=100_000)  # closed before the greeting
    with (
        Mailer(fake_gmail.settings(), policy=OUTAGE) as one,
        Mailer(fake_gmail.settings(), policy=OUTAGE) as two,
    ):
        for n in range(200):
            (one if n % 2 else two).submit(TO, f"m{n}", "x")
        cpu, start = time.process_time(), time.monotonic()
        time.sleep(2.0)
        cpu, elapsed = time.process_time() - cpu, time.monotonic() - start
        # Backoff 0.05, 0.1, 0.2, 0.4, 0.4 ... s shared by both: ~8 attempts in 2 s,
        # not one per row (the old worker made over a thousand a second).
        assert fake_gmail.connections <= 14
        assert cpu < 0.15 * elapsed  # the fake's threads included; bench_scale: < 5 %
        assert set(states(postbud_spool)) == {"queued"}
        fake_gmail.reset()  # the server is back
        back = time.monotonic()
        wait_for(lambda: len(fake_gmail.messages) > 0)
        assert time.monotonic() - back < OUTAGE.connect_max + 0.5  # within one step
        assert one.flush(20) and two.flush(20)
    assert len(fake_gmail.messages) == 200 and rows(postbud_spool) == []


def test_a_blocking_send_makes_its_attempt_and_feeds_the_backoff(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    from postbud.errors import TransportError

    fake_gmail.disconnect_next("CONNECT", times=2)
    with Mailer(fake_gmail.settings(), policy=OUTAGE) as m:
        with pytest.raises(TransportError):
            m.send(TO, "now", "x")
        waits = m.outbox.waits()
        assert waits is not None and waits[0] == "connect" and waits[1].step == 1
        with pytest.raises(TransportError):  # the backoff does not stop send()
            m.send(TO, "now", "x")
        assert m.outbox.waits() is not None
        assert m.send(TO, "now", "x").accepted == (TO,)
        assert m.outbox.waits() is None  # a success ends it


def test_an_untrusted_certificate_holds_the_queue_instead_of_dead_lettering_it(
    fake_gmail: FakeGmail, postbud_spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = RetryPolicy(base_delay=0.01, connect_base=0.05, connect_max=0.5, poll=0.05)
    fake_gmail.untrusted = True  # a proxy intercepting TLS, say
    with (
        caplog.at_level(logging.WARNING, logger="postbud"),
        Mailer(fake_gmail.settings(), policy=policy) as m,
    ):
        for n in range(50):
            m.submit(TO, f"m{n}", "x")
        time.sleep(1.2)
        assert set(states(postbud_spool)) == {"queued"} and m.stats()["dead"] == 0
        assert fake_gmail.connections <= 4  # one try per connect_max
        assert logins(fake_gmail) == 0  # refused before the login
        waits = m.outbox.waits()
        assert waits is not None and waits[1].needs_user
        fake_gmail.untrusted = False  # fixed: the queue goes within one connect_max
        assert m.flush(10)
    assert len(fake_gmail.messages) == 50
    assert caplog.text.count("will not send for postbud.test@gmail.com") == 1


def test_a_corrected_tls_set_up_does_not_wait_for_the_old_ones_backoff(
    fake_gmail: FakeGmail, postbud_spool: Path, tmp_path: Path
) -> None:
    bad_ca = tmp_path / "other-ca.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(bad_ca))
    with Mailer(fake_gmail.settings(ca_file=str(bad_ca)), policy=FAST) as m:
        m.submit(TO, "waits", "x")
        assert m.flush(2)  # settled: the TLS failure waits five minutes
    assert states(postbud_spool) == ["queued"]
    with Mailer(fake_gmail.settings(), policy=FAST) as fixed:  # the right ca_file
        assert fixed.flush(10)
    assert [m["Subject"] for m in fake_gmail.messages] == ["waits"]


def test_check_never_touches_queued_mail_and_send_summaries_count_only_accepted(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    spool = tmp_path / "outbox.sqlite"
    reader = Outbox.open(fake_gmail.settings(spool=str(spool)))  # stores, never sends
    for to, subject in (("nobody@example.com", "refused"), (TO, "fine")):
        envelope = build_message(mail_from=fake_gmail.username, to=to, subject=subject, text="x")
        assert reader.keep(envelope, Priority.NORMAL)
    reader.close(0)
    before = rows(spool)
    result = postbud(fake_gmail, spool, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(spool) == before and fake_gmail.messages == []
    result = postbud(fake_gmail, spool, "check", "--send", TO)
    assert result.returncode == 0
    assert rows(spool) == before and [m["Subject"] for m in fake_gmail.messages] == [
        "postbud check"
    ]
    fake_gmail.bad_recipients = {"nobody@example.com"}
    result = postbud(fake_gmail, spool, "send", "--to", TO, "--subject", "new")
    assert result.returncode == 0, result.stderr
    assert (
        "1 of 2 message(s) left in the spool by an earlier run went out; 1 failed for good"
        in result.stderr
    )


def test_a_password_corrected_only_in_case_or_spaces_is_judged_by_what_is_sent(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    from postbud._auth import AppPassword
    from postbud._outbox import credential_hash

    user = fake_gmail.username
    spaced = credential_hash(user, AppPassword("abcd efgh ijkl mnop"))
    assert spaced == credential_hash(user, AppPassword("abcdefghijklmnop"))  # same login
    assert spaced != credential_hash(user, AppPassword("ABCD EFGH IJKL MNOP"))  # another
    # The typo in upper case was refused; the corrected one logs in at once.
    with Mailer(
        fake_gmail.settings(app_password=fake_gmail.app_password.upper()), policy=FAST
    ) as m:
        m.submit(TO, "waits", "x")
        assert m.flush(5)
    with Mailer(fake_gmail.settings(), policy=FAST) as m:
        assert m.flush(10)
    assert [r["Subject"] for r in fake_gmail.messages] == ["waits"]


def test_a_refused_port_backs_off_like_any_failed_connection(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        settings = fake_gmail.settings(port=closed.getsockname()[1], exit_timeout=0.2)
        with Mailer(settings, policy=OUTAGE) as m:
            for n in range(100):
                m.submit(TO, f"m{n}", "x")
            cpu, start = time.process_time(), time.monotonic()
            time.sleep(1.5)
            cpu, elapsed = time.process_time() - cpu, time.monotonic() - start
            waits = m.outbox.waits()
            assert waits is not None and waits[0] == "connect"
            # 0.05, 0.1, 0.2, 0.4, 0.4 ... s: about 6 attempts, not one per row
            assert 3 <= waits[1].step <= 9
            assert "refused the connection" in waits[1].reason
            assert cpu < 0.15 * elapsed
            assert set(states(postbud_spool)) == {"queued"} and m.stats()["dead"] == 0


# -- what a blocking send() logs (issue 17): nothing that says its mail waits -----------


def test_a_blocking_send_refused_for_the_quota_logs_no_line_about_waiting_mail(
    fake_gmail: FakeGmail, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import postbud
    from postbud.testing import replies

    many = [f"r{i}@example.com" for i in range(9)]  # ordinary mail may use 9 of 10
    with Mailer(fake_gmail.settings(spool=str(tmp_path / "s.sqlite"), daily_limit=10)) as mailer:
        fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED)
        with caplog.at_level(logging.INFO, logger="postbud"):
            with pytest.raises(postbud.QuotaExceededError) as held:
                mailer.send("you@example.com", "Hello", "x")
            mailer.send("you@example.com", "Hello", "x")  # send() makes its attempt
            with pytest.raises(postbud.QuotaExceededError) as full:
                mailer.send(many, "Hello", "x")
        assert held.value.code == 550
        assert "this message was not sent (submit() would queue it)" in (full.value.hint or "")
        assert mailer.outbox.status().queued == 0
        # The callers have the errors; no line claims that their mail waits or is held.
        assert [r.getMessage() for r in caplog.records] == []
        # Queued mail over the limit is another matter: the worker says it waits.
        mailer.submit(many, "Later", "x")
        with caplog.at_level(logging.WARNING, logger="postbud"):
            mailer.flush(0.5)
        assert mailer.outbox.status().queued == 1
        assert "leaves no room" in caplog.text and "queued mail waits" in caplog.text
