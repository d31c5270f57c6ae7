"""docs/several-machines.md: its Docker Compose example, checked without Docker.

Docker does not run in postbud's CI, so the compose file is checked three ways: the
page shows the files word for word, every ``POSTBUD_`` variable in it is a setting,
``docker compose config`` accepts it where Docker Compose is installed, and the same
topology runs with processes: one ``redis-server`` and two copies of ``app.py``, each
with its own spool, sharing one daily limit and one alert.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from redistools import RedisServer, redis_server

import postbud
from postbud.testing import FakeGmail

__all__ = ["redis_server"]  # the fixture, for the test below

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "several-machines.md"
EXAMPLE = ROOT / "docs" / "examples" / "several-machines"


def test_the_page_shows_the_files_word_for_word() -> None:
    text = PAGE.read_text()
    for name in ("docker-compose.yml", "app.py"):
        block = re.search(
            rf"<!-- file: docs/examples/several-machines/{re.escape(name)} -->\n```\w+\n(.*?)```",
            text,
            re.S,
        )
        assert block is not None, name
        assert block.group(1) == (EXAMPLE / name).read_text(), name


def test_every_variable_of_the_compose_file_is_a_setting() -> None:
    compose = (EXAMPLE / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\b(POSTBUD_[A-Z_]+):", compose))
    settings = {f"POSTBUD_{f.name.upper()}" for f in dataclasses.fields(postbud.Settings)}
    assert {"POSTBUD_STATE", "POSTBUD_STATE_PASSWORD", "POSTBUD_SPOOL"} <= variables
    assert variables <= settings


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("Docker Compose is not installed: the topology test below stands in")
    env = {**os.environ, "REDIS_PASSWORD": "x", "POSTBUD_APP_PASSWORD": "y"}
    result = subprocess.run(
        [docker, "compose", "-f", str(EXAMPLE / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_two_app_processes_share_one_limit_and_one_alert(
    fake_gmail: FakeGmail, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The compose file's environment, with Redis and Gmail on 127.0.0.1.
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUD_")}
    connection = {f"POSTBUD_{k.upper()}": str(v) for k, v in fake_gmail.settings_values().items()}
    apps = []
    for n in (1, 2):
        env = {
            **base,
            **connection,
            "POSTBUD_DAILY_LIMIT": "5",
            "POSTBUD_ALERT_RESERVE": "0.2",  # 4 for receipts, the fifth for the alert
            "POSTBUD_STATE": redis_server.url,
            "POSTBUD_STATE_PASSWORD": redis_server.password,
            "POSTBUD_SPOOL": str(tmp_path / f"web{n}" / "spool.sqlite"),
            "ALERTS_TO": "oncall@example.com",
            "APP_MAILS": "3",
        }
        apps.append(
            subprocess.Popen(
                [sys.executable, str(EXAMPLE / "app.py")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for app in apps:
        out, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    # What an app kept in its spool at exit goes out with the next process of that
    # "machine" (on a loaded machine a Redis reply slower than its 0.5 s deadline makes
    # the ledger keep to a share of a limit of 5, and an alert waits a few seconds).
    for n in (1, 2):
        spool = tmp_path / f"web{n}" / "spool.sqlite"
        values = fake_gmail.settings_values(
            spool=spool, state=redis_server.url, state_password=redis_server.password
        )
        with postbud.Mailer(daily_limit=5, **values) as later:
            later.flush(10)  # what is due within 10 s: not what waits for tomorrow's room
    alerts = [
        str(m["Subject"]) for m in fake_gmail.messages if "payment provider" in str(m["Subject"])
    ]
    firsts = [s for s in alerts if " more since " not in s]
    assert len(firsts) == 1  # one first mail for the error both "machines" logged
    assert all("(1 more since " in s for s in alerts if s not in firsts)  # the other one
    receipts = sum(r["sent"] for r in results)
    # One limit for both "machines": ordinary mail stops at 4 of 5 (alerts may use the
    # fifth), never more, whatever the order.
    assert 1 <= receipts <= 4
    assert sum(r["waited"] for r in results) == 6 - receipts
    assert len(fake_gmail.messages) == receipts + len(alerts)
    counted = redis_server.client().hget(f"postbud:{{{fake_gmail.username}}}:totals", "recipients")
    assert counted == str(receipts + len(alerts))  # what Gmail accepted, counted once
