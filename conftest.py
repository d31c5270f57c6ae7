"""Root conftest: our own pytest plugin (the one users get) for tests/ and docs/examples/."""

from __future__ import annotations

import logging

import pytest

pytest_plugins = ["postbud.testing.plugin"]


@pytest.fixture(autouse=True)
def _quiet_aiosmtpd() -> None:
    logging.getLogger("mail.log").setLevel(logging.ERROR)
