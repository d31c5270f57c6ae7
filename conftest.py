"""Root conftest: our own pytest plugin (the one users get) for tests/ and docs/examples/."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

pytest_plugins = ["postbud.testing.plugin"]


@pytest.fixture(autouse=True)
def _quiet_aiosmtpd() -> None:
    logging.getLogger("mail.log").setLevel(logging.ERROR)


# Hypothesis profiles for tests/core/test_fuzz_message.py (issue 15). make test runs the
# short one: derandomized (the same examples on every run and every machine), no example
# database, 200 examples per property (about 10-20 s per Python). make fuzz runs the
# random, longer one: 5,000 examples per property.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is in the dev extra; the fuzz module skips without it
    pass
else:
    settings.register_profile(
        "postbud-short",
        derandomize=True,
        database=None,
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "postbud-fuzz",
        derandomize=False,
        database=None,
        max_examples=5_000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("postbud-short")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The Django test project runs only in its own invocations (make test passes
    --ds=djangoproject.settings_legacy or ...settings_mailers): one settings object
    cannot be both, and the core suite runs without pytest-django (-p no:django)."""
    django_tests = Path(__file__).parent / "tests" / "integrations" / "django"
    if collection_path == django_tests or django_tests in collection_path.parents:
        try:
            configured = config.getoption("ds", default=None)
        except ValueError:  # pytest-django is not loaded
            configured = None
        if not (configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
            return True
    return None
