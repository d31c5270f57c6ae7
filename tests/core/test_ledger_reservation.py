"""The ledger reserves a send's recipients before it, and settles them after.

Every store (the spool, memory, Redis) counts a send's recipients in the same atomic
step as its check; the count is then corrected to what Gmail accepted: all of them,
some (a refused recipient), or none (a failed send gives its reservation back).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redistools import RedisServer, redis_server

import postbud
from postbud.testing import FakeGmail, replies

__all__ = ["redis_server"]  # the fixture, imported for the tests below

STORES = ["spool", "memory", "redis"]


@pytest.fixture(params=STORES)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings that put the ledger in each store in turn."""
    if request.param == "spool":
        yield {"spool": tmp_path / "spool.sqlite"}
    elif request.param == "memory":
        yield {"spool": None}
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield {"spool": None, "state": server.url, "state_password": server.password}


def used(mailer: postbud.Mailer) -> int:
    return mailer.outbox.ledger.used(time.time())[0]


def test_a_send_counts_what_gmail_accepted(fake_gmail: FakeGmail, where: dict[str, Any]) -> None:
    with fake_gmail.mailer(daily_limit=10, alert_reserve=0, **where) as m:
        m.send(["a@example.com", "b@example.com"], "two", "x")
        assert used(m) == 2
        fake_gmail.fail_next(
            "RCPT", "550 5.1.1 The email account that you tried to reach does not exist."
        )
        result = m.send(["nobody@example.com", "c@example.com", "d@example.com"], "three", "x")
        assert result.accepted == ("c@example.com", "d@example.com")
        assert used(m) == 4  # reserved 3, settled at the 2 accepted


def test_a_failed_send_gives_its_reservation_back(
    fake_gmail: FakeGmail, where: dict[str, Any]
) -> None:
    with fake_gmail.mailer(daily_limit=3, alert_reserve=0, **where) as m:
        fake_gmail.fail_next("DATA", replies.TRY_AGAIN_LATER)
        with pytest.raises(postbud.DeliveryError):
            m.send(["a@example.com", "b@example.com", "c@example.com"], "refused", "x")
        assert used(m) == 0  # nobody got it: the whole limit is still there
        m.send(["a@example.com", "b@example.com", "c@example.com"], "again", "x")
        assert used(m) == 3
        with pytest.raises(postbud.QuotaExceededError) as info:
            m.send("d@example.com", "one too many", "x")
        assert "(3 of 3 used in the last 24 h" in str(info.value)


def test_the_worker_reserves_and_settles_too(fake_gmail: FakeGmail, where: dict[str, Any]) -> None:
    with fake_gmail.mailer(daily_limit=5, alert_reserve=0, **where) as m:
        fake_gmail.fail_next(
            "RCPT", "550 5.1.1 The email account that you tried to reach does not exist."
        )
        m.submit(["nobody@example.com", "a@example.com"], "queued", "x")
        assert m.flush(10)
        assert used(m) == 1
        for n in range(6):
            m.submit(f"u{n}@example.com", "queued", "x")
        assert m.flush(3)  # the sixth waits for tomorrow's room
        assert used(m) == 5
        assert len(fake_gmail.messages) == 5
        assert m.stats()["held"] >= 1


@pytest.mark.parametrize("store", ["spool", "redis"])
def test_settling_again_changes_nothing(
    fake_gmail: FakeGmail, store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The worker settles a row in its spool commit; when that commit fails it tries the
    # same settle again later, and the Redis call, outside the commit, already ran.
    where: dict[str, Any] = {"spool": tmp_path / "spool.sqlite"}
    if store == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        where.update(state=server.url, state_password=server.password)
    with fake_gmail.mailer(daily_limit=10, alert_reserve=0, **where) as m:
        ledger = m.outbox.ledger
        reservation = ledger.reserve(3, False, time.time())
        assert used(m) == 3
        for _ in range(2):
            ledger.settle(reservation, 1, time.time())
        assert used(m) == 1
