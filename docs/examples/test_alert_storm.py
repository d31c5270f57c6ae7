"""Testing error alerts: a clock you move, tick() instead of waiting, FakeGmail's inbox."""

from __future__ import annotations

import logging

import postbud
from postbud.testing import FakeGmail


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_alert_then_one_follow_up(fake_gmail: FakeGmail) -> None:
    clock = Clock()
    mailer = fake_gmail.mailer()
    handler = postbud.AlertHandler("oncall@example.com", mailer=mailer, clock=clock)
    log = logging.getLogger("shop.payments")
    log.addHandler(handler)
    try:
        for order in range(50):
            log.error("payment for order %s failed", order)
        handler.tick()  # what the handler's thread does about once a second
        mailer.flush(10)
        assert [m["X-Postbud-Alert"] for m in fake_gmail.messages] == ["first"]

        clock.now += 601  # alert_cooldown (600 s) is over: the follow-up is due
        handler.tick()
        mailer.flush(10)
    finally:
        log.removeHandler(handler)
        handler.close()
        mailer.close()

    first, follow_up = fake_gmail.messages
    assert first["Subject"] == "[ERROR] shop.payments: payment for order 0 failed"
    assert follow_up["X-Postbud-Count"] == "49"
    assert "49 more time(s)" in (follow_up.text or "")
