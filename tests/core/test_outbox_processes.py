"""The outbox across processes: kill -9, two writers on one spool, leases, atexit, fork."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postbud.testing import FakeGmail

CHILD = r"""
import json, sys, time
import postbud
cfg = json.loads(sys.argv[1])
mailer = postbud.Mailer(**cfg["settings"])
ids = [mailer.submit("you@example.com", f"{cfg['tag']} {n}", "x") for n in range(cfg["n"])]
print(json.dumps(ids), flush=True)
if cfg["then"] == "sleep":
    time.sleep(120)
elif cfg["then"] == "flush":
    assert mailer.flush(30), "not flushed"
    mailer.close()
# "exit": nothing more; the atexit hook drains the worker
"""


def settings_for(fake: FakeGmail, spool: Path, **overrides: Any) -> dict[str, Any]:
    return fake.settings_values(**{"timeout": 5, "spool": str(spool), **overrides})


def start_child(settings: dict[str, Any], tag: str, n: int, then: str) -> subprocess.Popen[str]:
    cfg = json.dumps({"settings": settings, "tag": tag, "n": n, "then": then})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, cfg],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ids_from(child: subprocess.Popen[str]) -> list[str]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, child.stderr.read() if child.stderr else "no output"
    return list(json.loads(line))


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]  # bound but not listening: connections are refused


def test_kill_9_loses_nothing_and_the_next_process_delivers(
    fake_gmail: FakeGmail, postbud_spool: Path, closed_port: int
) -> None:
    settings = settings_for(fake_gmail, postbud_spool, port=closed_port)
    with start_child(settings, "k", 5, "sleep") as child:
        ids = ids_from(child)
        time.sleep(0.3)  # its worker tries, fails, schedules retries
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert fake_gmail.messages == []
    with fake_gmail.mailer(spool=str(postbud_spool)) as successor:  # starts its worker at once
        assert successor.flush(15)
    delivered = [m["Message-ID"] for m in fake_gmail.messages]
    assert sorted(delivered) == sorted(ids)  # type: ignore[type-var]  # nothing lost, nothing doubled


def test_a_killed_workers_lease_is_taken_over(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    fake_gmail.delay(60, "MAIL")  # the child's worker hangs on its MAIL FROM
    settings = settings_for(fake_gmail, postbud_spool, timeout=1.5)
    with start_child(settings, "lease", 1, "sleep") as child:
        [message_id] = ids_from(child)
        deadline = time.monotonic() + 10
        while "MAIL" not in fake_gmail.commands and time.monotonic() < deadline:
            time.sleep(0.02)
        claimed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    fake_gmail.delay(0, "MAIL")
    with fake_gmail.mailer(spool=str(postbud_spool), timeout=1.5) as successor:
        assert successor.flush(15)
    assert time.monotonic() - claimed_at >= 2.0  # it waited for the 3 s lease to expire
    assert [m["Message-ID"] for m in fake_gmail.messages] == [message_id]


def test_two_processes_on_one_spool_never_double(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    with (
        start_child(settings_for(fake_gmail, postbud_spool), "child", 30, "flush") as child,
        fake_gmail.mailer(spool=str(postbud_spool)) as parent,
    ):
        mine = [parent.submit("you@example.com", f"parent {n}", "x") for n in range(30)]
        theirs = ids_from(child)
        assert child.wait(60) == 0, child.stderr.read() if child.stderr else ""
        assert parent.flush(30)
    delivered = [m["Message-ID"] for m in fake_gmail.messages]
    assert len(delivered) == 60
    assert sorted(delivered) == sorted(mine + theirs)  # type: ignore[type-var]


def test_atexit_drains_what_the_running_worker_has(
    fake_gmail: FakeGmail, postbud_spool: Path
) -> None:
    with start_child(settings_for(fake_gmail, postbud_spool), "atexit", 3, "exit") as child:
        ids = ids_from(child)
        assert child.wait(30) == 0
    assert sorted(m["Message-ID"] or "" for m in fake_gmail.messages) == sorted(ids)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_worker(fake_gmail: FakeGmail, postbud_spool: Path) -> None:
    with fake_gmail.mailer() as mailer:
        mailer.submit("you@example.com", "parent before", "x")
        assert mailer.flush(10)
        assert mailer.outbox.spool is not None
        inherited = [mailer.outbox.spool.database._front, mailer.outbox.spool.database._back]
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                # Nothing crossed the fork: no worker, no SMTP socket, fresh SQLite handles.
                assert mailer.outbox.thread is None
                assert mailer.outbox.spool is not None
                assert mailer.outbox.spool.database._back not in inherited
                assert mailer.outbox.spool.database._back._db is None  # opened lazily, in the child
                mailer.submit("you@example.com", "child", "x")
                status = 0 if mailer.flush(10) else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        mailer.submit("you@example.com", "parent after", "x")
        assert mailer.flush(10)
    assert sorted(m["Subject"] or "" for m in fake_gmail.messages) == [
        "child",
        "parent after",
        "parent before",
    ]


STUCK = r"""
import json, sys, time
import postbud
cfg = json.loads(sys.argv[1])
mailers = [postbud.Mailer(**cfg["settings"]) for _ in range(3)]
for m in mailers:
    m.submit("you@example.com", "stuck", "x")
time.sleep(0.5)  # every worker is now waiting for its MAIL FROM reply
print("exiting", flush=True)
"""


def test_exit_waits_once_for_all_mailers(fake_gmail: FakeGmail, tmp_path: Path) -> None:
    fake_gmail.delay(30, "MAIL")
    settings = settings_for(fake_gmail, tmp_path / "spool.sqlite", exit_timeout=1, timeout=20)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", STUCK, json.dumps({"settings": settings})],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - start
    fake_gmail.delay(0, "MAIL")
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    # 0.5 s of work, one shared exit_timeout of 1 s, about 1 s to stop the workers, and
    # Python's start-up: not three exit_timeouts one after the other.
    assert elapsed < 4.5, elapsed
